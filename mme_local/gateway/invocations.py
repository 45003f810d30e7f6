"""InvokeEndpoint as a bare ASGI handler: the one route on the warm path.

It skips the framework's request and response objects (measured: see docs/benchmarks.md) and
stops reading a body as soon as it passes the 6 MB limit, with or without Content-Length. A
client that goes away before its body is complete gets nothing invoked (nor a cold model
loaded) on its behalf, and a body that disagrees with its Content-Length is refused.
"""

from __future__ import annotations

import logging
import uuid

from starlette.types import Receive, Scope, Send

from mme_local.gateway.errors import InternalFailure, SageMakerError, ValidationError
from mme_local.gateway.service import EndpointService, InvokeRequest, InvokeResponse
from mme_local.gateway.validation import check_body_size

log = logging.getLogger(__name__)


PREFIX = "/endpoints/"
SUFFIX = "/invocations"

_HEADERS_READ = {
    b"x-amzn-sagemaker-target-model",
    b"content-type",
    b"accept",
    b"content-length",
    b"x-amzn-sagemaker-custom-attributes",
    b"x-amzn-sagemaker-inference-id",
    b"x-amzn-sagemaker-target-variant",
    b"x-amzn-sagemaker-session-id",
    b"x-amzn-sagemaker-inference-component",
    b"x-amzn-sagemaker-target-container-hostname",
    b"x-amzn-sagemaker-enable-explanations",
    b"x-amzn-sagemaker-prefix-aware-id",
}

# SageMaker Runtime's other operations on an endpoint; a multi-model endpoint serves neither.
OTHER_OPERATIONS = {
    "/invocations-response-stream": "InvokeEndpointWithResponseStream",
    "/async-invocations": "InvokeEndpointAsync",
}


def endpoint_name_of(path: str) -> str | None:
    """`/endpoints/{name}/invocations` -> name; anything else -> None."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


def other_operation_of(path: str) -> tuple[str, str] | None:
    """`/endpoints/{name}/async-invocations` -> (name, "InvokeEndpointAsync"), and likewise
    for response streaming; anything else -> None."""
    for suffix, operation in OTHER_OPERATIONS.items():
        if path.startswith(PREFIX) and path.endswith(suffix):
            name = path[len(PREFIX) : -len(suffix)]
            if name and "/" not in name:
                return name, operation
    return None


async def refuse_other_operation(
    service: EndpointService, endpoint_name: str, operation: str, send: Send
) -> None:
    """Answered from the path alone: the body is never read (nor invoked)."""
    await _send_error(send, service.refuse_operation(endpoint_name, operation), str(uuid.uuid4()))


class ClientDisconnected(Exception):
    """The client closed the connection before its request body was complete."""


async def _read_body(receive: Receive, declared: int | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        check_body_size(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if declared is not None and size != declared:
        raise ValidationError(
            f"Received {size} bytes of a body whose Content-Length is {declared}."
        )
    return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    raw = [(b"content-type", content_type.encode("latin-1"))]
    raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: SageMakerError, request_id: str) -> None:
    response = error.to_response(request_id)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def _success_headers(result: InvokeResponse, request_id: str) -> dict[str, str]:
    headers = {
        "x-Amzn-Invoked-Production-Variant": result.variant_name,
        "x-amzn-RequestId": request_id,
    }
    if result.custom_attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = result.custom_attributes
    headers.update(_session_headers(result))
    return headers


def _session_headers(result: InvokeResponse) -> dict[str, str]:
    """Stateful sessions: the container opens and closes them; its answer passes through."""
    headers: dict[str, str] = {}
    if result.new_session_id is not None:
        headers["X-Amzn-SageMaker-New-Session-Id"] = result.new_session_id
    if result.closed_session_id is not None:
        headers["X-Amzn-SageMaker-Closed-Session-Id"] = result.closed_session_id
    return headers


async def handle_invocations(
    service: EndpointService, endpoint_name: str, scope: Scope, receive: Receive, send: Send
) -> None:
    request_id = str(uuid.uuid4())
    headers: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key in _HEADERS_READ:
            headers[key] = value

    def header(name: bytes) -> str | None:
        value = headers.get(name)
        return value.decode("latin-1") if value is not None else None

    try:
        length = header(b"content-length")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None:
            check_body_size(declared)
        request = InvokeRequest(
            endpoint_name=endpoint_name,
            target_model=header(b"x-amzn-sagemaker-target-model"),
            body=await _read_body(receive, declared),
            request_id=request_id,
            content_type=header(b"content-type"),
            accept=header(b"accept"),
            custom_attributes=header(b"x-amzn-sagemaker-custom-attributes"),
            inference_id=header(b"x-amzn-sagemaker-inference-id"),
            target_variant=header(b"x-amzn-sagemaker-target-variant"),
            session_id=header(b"x-amzn-sagemaker-session-id"),
            inference_component=header(b"x-amzn-sagemaker-inference-component"),
            target_container_hostname=header(b"x-amzn-sagemaker-target-container-hostname"),
            enable_explanations=header(b"x-amzn-sagemaker-enable-explanations"),
            prefix_aware_id=header(b"x-amzn-sagemaker-prefix-aware-id"),
        )
        result = await service.invoke(request)
    except ClientDisconnected:
        log.info("request %s: the client left before sending its whole body", request_id)
        return
    except SageMakerError as error:
        await _send_error(send, error, request_id)
        return
    except Exception:
        log.exception("unexpected failure in InvokeEndpoint")
        await _send_error(send, InternalFailure("An internal error occurred."), request_id)
        return
    await _send(
        send,
        200,
        result.body,
        result.content_type or "application/json",
        _success_headers(result, request_id),
    )
