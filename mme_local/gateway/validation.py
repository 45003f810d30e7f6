"""InvokeEndpoint's input constraints, as botocore's service model states them."""

from __future__ import annotations

import re

from mme_local.gateway.errors import ValidationError

MAX_BODY_BYTES = 6_291_456
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
# \A\S[\p{Print}]*\z, where Java's \p{Print} is printable ASCII.
_TARGET_MODEL = re.compile(r"\A\S[\x20-\x7e]*\Z")
_SESSION_ID = re.compile(r"^(NEW_SESSION)$|^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")


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


def _check_ascii(value: str | None, member: str) -> None:
    """`\\p{ASCII}*` with at most 1024 characters (ContentType, Accept, CustomAttributes)."""
    if value is not None and (len(value) > 1024 or not value.isascii()):
        raise _constraint(value[:64], member, "Member must be at most 1024 ASCII characters")


def _check_printable_id(value: str | None, member: str) -> None:
    r"""1-64 characters, `\A\S[\p{Print}]*\z` (InferenceId, PrefixAwareId)."""
    if value is None:
        return
    if not 1 <= len(value) <= 64:
        raise _constraint(value[:64], member, "Member must have length between 1 and 64")
    if not _TARGET_MODEL.match(value):
        raise _constraint(
            value, member, r"Member must satisfy regular expression pattern: \A\S[\p{Print}]*\z"
        )


def check_optional_headers(
    custom_attributes: str | None,
    inference_id: str | None,
    target_variant: str | None,
    content_type: str | None = None,
    accept: str | None = None,
    session_id: str | None = None,
    prefix_aware_id: str | None = None,
) -> None:
    _check_ascii(custom_attributes, "customAttributes")
    _check_ascii(content_type, "contentType")
    _check_ascii(accept, "accept")
    _check_printable_id(inference_id, "inferenceId")
    _check_printable_id(prefix_aware_id, "prefixAwareId")
    if target_variant is not None:
        if len(target_variant) > 63:
            raise _constraint(
                target_variant[:64],
                "targetVariant",
                "Member must have length less than or equal to 63",
            )
        if not _ENDPOINT_NAME.match(target_variant):
            raise _constraint(
                target_variant,
                "targetVariant",
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
            )
    if session_id is not None:
        if len(session_id) > 256:
            raise _constraint(
                session_id[:64], "sessionId", "Member must have length less than or equal to 256"
            )
        if not _SESSION_ID.match(session_id):
            raise _constraint(
                session_id,
                "sessionId",
                "Member must satisfy regular expression pattern: "
                "^(NEW_SESSION)$|^[a-zA-Z0-9](-*[a-zA-Z0-9])*$",
            )


def check_not_multi_model_features(
    endpoint_name: str,
    inference_component: str | None,
    target_container_hostname: str | None,
    enable_explanations: str | None,
) -> None:
    """Refuse members that address parts a multi-model endpoint does not have.

    The cloud refuses TargetContainerHostname on an endpoint not configured for direct
    invocation (developer guide, multi-container direct invocation); the other two are
    refused the same way here because an MME has no inference components and no explainer.
    """
    if inference_component is not None:
        raise ValidationError(
            f"Inference Component Name header is not allowed for endpoint {endpoint_name}: "
            "it hosts no inference components. Remove InferenceComponentName."
        )
    if target_container_hostname is not None:
        raise ValidationError(
            f"Endpoint {endpoint_name} is not configured for direct invocation; "
            "remove TargetContainerHostname."
        )
    if enable_explanations is not None:
        raise ValidationError(
            f"Endpoint {endpoint_name} has no ClarifyExplainerConfig; remove EnableExplanations."
        )
