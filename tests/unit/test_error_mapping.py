"""How each failure below the gateway becomes a SageMaker error (status, code, members)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import botocore.loaders
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mme_local.cache.extract import ArchiveRejected
from mme_local.cache.manager import ModelNotReady
from mme_local.gateway.errors import MESSAGE_MAX_CHARS, SageMakerError, cut_text
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


def _message_max() -> int:
    """botocore's own figure: sagemaker-runtime's `Message` shape."""
    model = botocore.loaders.Loader().load_service_model("sagemaker-runtime", "service-2")
    return int(model["shapes"]["Message"]["max"])


def test_model_error_texts_fit_the_service_models_message_shape() -> None:
    body = ("x" * 100 + "\n") * 100  # 10,100 characters
    error = _service()._translate(ContainerError("long", 500, body.encode()), "m.tar.gz")
    limit = _message_max()
    assert limit == MESSAGE_MAX_CHARS == 2048
    original = error.extra["OriginalMessage"]
    assert len(original) == limit
    assert original.startswith(body[:1500])
    assert original.endswith(" more characters in the mme-local log]")
    assert len(error.message) <= limit
    assert error.message.startswith('Received server error (500) from model with message "xxx')
    assert error.message.endswith('". See /x.log in account 123456789012 for more information.'), (
        "the cut falls inside the quoted body, so the frame stays whole"
    )
    assert len(error.body()["Message"]) <= limit


def test_a_body_that_fits_is_not_cut() -> None:
    body = "y" * 2048
    error = _service()._translate(ContainerError("fits", 500, body.encode()), "m.tar.gz")
    assert error.extra["OriginalMessage"] == body


def test_every_error_message_is_capped_where_it_is_serialized() -> None:
    error = SageMakerError("z" * 5000)
    assert len(error.body()["Message"]) == MESSAGE_MAX_CHARS


def test_cut_says_how_much_was_cut() -> None:
    text = "a" * 3000
    cut = cut_text(text, 100)
    assert len(cut) == 100
    kept, _, note = cut.partition("... [")
    assert note == f"{3000 - len(kept)} more characters in the mme-local log]"
    assert cut_text("short", 100) == "short"


def test_the_full_body_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    body = b"<html>" + b"q" * 5000 + b"</html>"
    with caplog.at_level(logging.INFO, logger="mme_local.gateway.service"):
        _service()._translate(ContainerError("bad gateway", 502, body), "m.tar.gz")
    assert any(body.decode() in record.getMessage() for record in caplog.records)


def test_the_log_keeps_at_most_the_configured_bytes(caplog: pytest.LogCaptureFixture) -> None:
    service = EndpointService(
        IDENTITY,
        cache=None,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        metrics=Metrics(),
        options=ServiceOptions(error_body_limit_bytes=10),
    )
    html = b"<html><body>502 Bad Gateway</body></html>"
    with caplog.at_level(logging.INFO, logger="mme_local.gateway.service"):
        error = service._translate(ContainerError("bad gateway", 502, html), "m.tar.gz")
    assert error.extra["OriginalMessage"] == "<html><bod"
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert f"<html><bod... [{len(html) - 10} more bytes not kept]" in logged


@given(st.text(max_size=3000), st.integers(min_value=0, max_value=2500))
def test_cut_text_never_passes_its_limit_and_counts_exactly(text: str, limit: int) -> None:
    cut = cut_text(text, limit)
    assert len(cut) <= limit
    if len(text) <= limit:
        assert cut == text
    elif limit >= 64:
        kept, marker, note = cut.rpartition("... [")
        assert marker and text.startswith(kept)
        assert note == f"{len(text) - len(kept)} more characters in the mme-local log]"
