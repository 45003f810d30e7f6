"""InvokeEndpoint's input constraints, as botocore's service model states them."""

from __future__ import annotations

import re

from mme_local.gateway.errors import ValidationError

MAX_BODY_BYTES = 6_291_456
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
# \A\S[\p{Print}]*\z, where Java's \p{Print} is printable ASCII.
_TARGET_MODEL = re.compile(r"\A\S[\x20-\x7e]*\Z")


def _constraint(value: str, member: str, constraint: str) -> ValidationError:
    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: {constraint}"
    )


def check_endpoint_name(name: str) -> None:
    if len(name) > 63:
        raise _constraint(name, "endpointName", "Member must have length less than or equal to 63")
    if not _ENDPOINT_NAME.match(name):
        raise _constraint(
            name,
            "endpointName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
        )


def check_target_model(target_model: str | None, request_id: str) -> str:
    if target_model is None or target_model == "":
        raise ValidationError(f"Request {request_id} is missing a target model header.")
    if len(target_model) > 1024:
        raise _constraint(
            target_model[:64] + "...",
            "targetModel",
            "Member must have length less than or equal to 1024",
        )
    if not _TARGET_MODEL.match(target_model):
        raise _constraint(
            target_model,
            "targetModel",
            r"Member must satisfy regular expression pattern: \A\S[\p{Print}]*\z",
        )
    return target_model


def check_body_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise ValidationError(
            f"Received payload of {size} bytes, which exceeds the maximum of {MAX_BODY_BYTES} "
            "bytes for InvokeEndpoint."
        )


def check_optional_headers(
    custom_attributes: str | None, inference_id: str | None, target_variant: str | None
) -> None:
    if custom_attributes is not None and (
        len(custom_attributes) > 1024 or not custom_attributes.isascii()
    ):
        raise _constraint(
            custom_attributes[:64],
            "customAttributes",
            "Member must be at most 1024 ASCII characters",
        )
    if inference_id is not None and not 1 <= len(inference_id) <= 64:
        raise _constraint(
            inference_id[:64], "inferenceId", "Member must have length between 1 and 64"
        )
    if target_variant is not None and len(target_variant) > 63:
        raise _constraint(
            target_variant[:64],
            "targetVariant",
            "Member must have length less than or equal to 63",
        )
