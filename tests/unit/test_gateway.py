"""The gateway's HTTP layer in-process: AWS error shapes, headers and limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mme_local.gateway.app import Gateway, create_app
from mme_local.gateway.errors import ModelError, SageMakerError, ValidationError
from mme_local.gateway.service import (
    EndpointIdentity,
    EndpointService,
    InvokeRequest,
    InvokeResponse,
)
from mme_local.metrics import Metrics


class FakeService:
    def __init__(self, outcome: InvokeResponse | SageMakerError) -> None:
        self.outcome = outcome
        self.requests: list[InvokeRequest] = []

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        self.requests.append(request)
        if isinstance(self.outcome, SageMakerError):
            raise self.outcome
        return self.outcome


class FakeAdmin:
    def healthy(self) -> bool:
        return True

    def metrics_text(self) -> bytes:
        return b"mme_invocations_total 0.0\n"

    async def models(self) -> list[dict[str, Any]]:
        return []

    def evictions(self) -> list[dict[str, Any]]:
        return []

    async def status(self) -> dict[str, Any]:
        return {}


def _client(outcome: InvokeResponse | SageMakerError) -> tuple[httpx.AsyncClient, FakeService]:
    service = FakeService(outcome)
    gateway = Gateway(service, FakeAdmin())  # type: ignore[arg-type]
    app = create_app(lambda: gateway)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway"), service


async def test_success_passes_bytes_and_sets_sagemaker_headers() -> None:
    client, service = _client(
        InvokeResponse(b"\x00\x01raw", "application/x-bin", "k=v", "AllTraffic")
    )
    response = await client.post(
        "/endpoints/local-mme/invocations",
        content=b"\xffpayload",
        headers={
            "X-Amzn-SageMaker-Target-Model": "sub/dir/model-1.tar.gz",
            "Content-Type": "application/octet-stream",
            "X-Amzn-SageMaker-Custom-Attributes": "trace=1",
        },
    )
    assert response.status_code == 200
    assert response.content == b"\x00\x01raw"
    assert response.headers["content-type"] == "application/x-bin"
    assert response.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "k=v"
    assert response.headers["x-amzn-requestid"]
    sent = service.requests[0]
    assert sent.body == b"\xffpayload"
    assert sent.target_model == "sub/dir/model-1.tar.gz"
    assert sent.custom_attributes == "trace=1"
    assert sent.endpoint_name == "local-mme"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ValidationError("bad"), 400, "ValidationError"),
        (
            ModelError("boom", "INTERNAL_FAILURE_FROM_MODEL", 502, "upstream", "arn:x"),
            424,
            "ModelError",
        ),
    ],
)
async def test_errors_are_aws_shaped(error: SageMakerError, status: int, code: str) -> None:
    client, _ = _client(error)
    response = await client.post(
        "/endpoints/local-mme/invocations",
        content=b"{}",
        headers={"X-Amzn-SageMaker-Target-Model": "m.tar.gz"},
    )
    assert response.status_code == status
    assert response.headers["x-amzn-errortype"].split(":")[0] == code
    body = json.loads(response.content)
    assert body["Message"] == error.message
    assert response.headers["x-amzn-requestid"]
    if isinstance(error, ModelError):
        assert body["ErrorCode"] == "INTERNAL_FAILURE_FROM_MODEL"
        assert body["OriginalStatusCode"] == 502
        assert body["OriginalMessage"] == "upstream"
        assert body["LogStreamArn"] == "arn:x"


async def test_oversize_body_is_refused_from_its_declared_length() -> None:
    client, service = _client(InvokeResponse(b"", None, None, "AllTraffic"))
    response = await client.post(
        "/endpoints/local-mme/invocations",
        content=b"x" * (6_291_456 + 1),
        headers={"X-Amzn-SageMaker-Target-Model": "m.tar.gz"},
    )
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationError")
    assert service.requests == [], "the service never saw the request"


async def test_ping_and_metrics() -> None:
    client, _ = _client(InvokeResponse(b"", None, None, "AllTraffic"))
    assert (await client.get("/ping")).status_code == 200
    metrics = await client.get("/metrics")
    assert b"mme_invocations_total" in metrics.content


async def test_oversize_chunked_body_is_refused_while_streaming() -> None:
    client, service = _client(InvokeResponse(b"", None, None, "AllTraffic"))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield b"x" * 1_048_576

    response = await client.post(
        "/endpoints/local-mme/invocations",
        content=chunks(),
        headers={"X-Amzn-SageMaker-Target-Model": "m.tar.gz"},
    )
    assert response.status_code == 400
    assert b"exceeds the maximum of 6291456 bytes" in response.content
    assert service.requests == []


async def test_other_paths_are_not_invocations() -> None:
    client, service = _client(InvokeResponse(b"", None, None, "AllTraffic"))
    response = await client.post("/endpoints/a/b/invocations", content=b"{}")
    assert response.status_code == 404
    assert service.requests == []


def _real_service_client() -> httpx.AsyncClient:
    """The real service (its refusals need no cache or container) behind the real routes."""
    identity = EndpointIdentity("local-mme", "AllTraffic", "123456789012", "us-east-1", "/x.log")
    service = EndpointService(identity, None, None, Metrics())  # type: ignore[arg-type]
    gateway = Gateway(service, FakeAdmin())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(lambda: gateway))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


@pytest.mark.parametrize(
    ("suffix", "operation"),
    [
        ("invocations-response-stream", "InvokeEndpointWithResponseStream"),
        ("async-invocations", "InvokeEndpointAsync"),
    ],
)
async def test_the_other_runtime_operations_get_an_aws_shaped_refusal(
    suffix: str, operation: str
) -> None:
    client = _real_service_client()
    response = await client.post(
        f"/endpoints/local-mme/{suffix}",
        content=b"{}",
        headers={"X-Amzn-SageMaker-Target-Model": "m.tar.gz"},
    )
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"].startswith("ValidationError:")
    assert response.headers["x-amzn-requestid"]
    message = response.json()["Message"]
    assert operation in message
    assert "multi-model endpoint" in message

    other = await client.post(f"/endpoints/other-mme/{suffix}", content=b"{}")
    assert other.status_code == 400
    assert other.json()["Message"] == "Endpoint other-mme of account 123456789012 not found."


async def test_the_prefix_aware_id_header_reaches_the_service() -> None:
    client, service = _client(InvokeResponse(b"{}", None, None, "AllTraffic"))
    response = await client.post(
        "/endpoints/local-mme/invocations",
        content=b"{}",
        headers={
            "X-Amzn-SageMaker-Target-Model": "m.tar.gz",
            "X-Amzn-SageMaker-Prefix-Aware-Id": "a1",
        },
    )
    assert response.status_code == 200
    assert service.requests[0].prefix_aware_id == "a1"
