"""How each failure below the gateway becomes a SageMaker error (status, code, members)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mme_local.cache.extract import ArchiveRejected
from mme_local.cache.manager import ModelNotReady
from mme_local.gateway.errors import SageMakerError
from mme_local.gateway.service import EndpointIdentity, EndpointService, ServiceOptions
from mme_local.metrics import Metrics
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    LoadRejected,
    RuntimeExited,
    RuntimeTimeout,
    RuntimeUnavailable,
)
from mme_local.store.source import ObjectMissing, StoreUnavailable

IDENTITY = EndpointIdentity("local-mme", "AllTraffic", "123456789012", "us-east-1", Path("/x.log"))


def _service() -> EndpointService:
    return EndpointService(IDENTITY, cache=None, client=None, metrics=Metrics())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "status", "code", "error_code"),
    [
        (ObjectMissing("b", "models/m.tar.gz"), 400, "ValidationError", None),
        (ArchiveRejected("member '../x' escapes"), 400, "ValidationError", None),
        (ModelNotReady("m.tar.gz", 60), 429, "ModelNotReadyException", None),
        (LoadRejected("bad config", 400), 424, "ModelError", "CLIENT_ERROR_FROM_MODEL"),
        (
            InsufficientMemory("CUDA out of memory", 507),
            424,
            "ModelError",
            "INTERNAL_FAILURE_FROM_MODEL",
        ),
        (ContainerError("boom", 502), 424, "ModelError", "INTERNAL_FAILURE_FROM_MODEL"),
        (RuntimeTimeout("slow"), 424, "ModelError", "INTERNAL_FAILURE_FROM_MODEL"),
        (RuntimeUnavailable("refused"), 503, "ServiceUnavailable", None),
        (RuntimeExited(-9, "log"), 503, "ServiceUnavailable", None),
        (StoreUnavailable("S3 down"), 530, "InternalDependencyException", None),
        (OSError(errno.ENOSPC, "No space left on device"), 500, "InternalFailure", None),
        (RuntimeError("surprise"), 500, "InternalFailure", None),
    ],
)
def test_failure_mapping(
    failure: Exception, status: int, code: str, error_code: str | None
) -> None:
    error = _service()._translate(failure, "m.tar.gz")
    assert isinstance(error, SageMakerError)
    assert (error.status, error.code, error.error_code) == (status, code, error_code)
    assert error.message


def test_model_error_members_and_wording() -> None:
    error = _service()._translate(ContainerError("upstream said no", 502), "m.tar.gz")
    assert error.body() == {
        "ErrorCode": "INTERNAL_FAILURE_FROM_MODEL",
        "Message": 'Received server error (502) from model with message "upstream said no". '
        "See /x.log in account 123456789012 for more information.",
        "OriginalStatusCode": 502,
        "OriginalMessage": "upstream said no",
        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:"
        "/aws/sagemaker/Endpoints/local-mme",
    }


def test_timeout_uses_sagemakers_multi_model_words() -> None:
    error = _service()._translate(RuntimeTimeout("slow"), "m.tar.gz")
    assert error.extra["OriginalStatusCode"] == 0
    assert error.message.startswith(
        'Received server error (0) from model with message "Your invocation timed out while '
        "waiting for a response from container model. "
    )
    assert "primary" not in error.message


def test_model_error_quotes_the_containers_body_verbatim() -> None:
    body = b'{"error":"failed to run","detail":{"line":3}}'
    error = _service()._translate(ContainerError("failed to run", 500, body), "m.tar.gz")
    assert error.extra["OriginalMessage"] == body.decode()
    assert f'with message "{body.decode()}"' in error.message


def test_model_error_body_is_capped_and_says_so() -> None:
    service = EndpointService(
        IDENTITY,
        cache=None,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        metrics=Metrics(),
        options=ServiceOptions(error_body_limit_bytes=10),
    )
    html = b"<html><body>502 Bad Gateway</body></html>"
    error = service._translate(ContainerError("bad gateway", 502, html), "m.tar.gz")
    assert error.extra["OriginalMessage"] == (
        f"<html><bod... [{len(html) - 10} more bytes cut by mme-local]"
    )
