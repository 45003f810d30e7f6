"""The SigV4 verifier against requests signed by botocore's own signer."""

from __future__ import annotations

import datetime
import json
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mme_local.gateway.app import Gateway, create_app
from mme_local.gateway.service import InvokeResponse
from mme_local.gateway.sigv4 import (
    InvalidSignatureException,
    MissingAuthenticationToken,
    SignedRequest,
    SigV4Verifier,
    UnrecognizedClientException,
    require_sigv4,
)
from tests.unit.test_gateway import FakeAdmin, FakeService

PATH = "/endpoints/local-mme/invocations"


def _signed(
    body: bytes = b'{"x": 1}',
    key: str = "AKIDLOCAL",
    secret: str = "s3cret",
    region: str = "us-east-1",
    sign: dict[str, str] | None = None,
    add_after: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request botocore signed with `sign` (default: a TargetModel and a content
    type), plus `add_after` added once the signature was made (so not covered by it)."""
    if sign is None:
        sign = {"X-Amzn-SageMaker-Target-Model": "m.tar.gz", "Content-Type": "application/json"}
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8080{PATH}", data=body, headers=sign)
    SigV4Auth(Credentials(key, secret), "sagemaker", region).add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers.update({name.lower(): value for name, value in (add_after or {}).items()})
    headers["host"] = "127.0.0.1:8080"
    return headers


def _request(headers: dict[str, str], body: bytes = b'{"x": 1}') -> SignedRequest:
    return SignedRequest(
        method="POST",
        raw_path=PATH.encode(),
        query_string=b"",
        headers=tuple((k.encode(), v.encode()) for k, v in headers.items()),
        body=body,
    )


VERIFIER = SigV4Verifier("AKIDLOCAL", "s3cret", "us-east-1")


def test_a_request_signed_with_the_key_pair_passes() -> None:
    VERIFIER.verify(_request(_signed()))


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        (_signed(secret="wrong"), b'{"x": 1}', InvalidSignatureException),
        (_signed(key="AKIDOTHER"), b'{"x": 1}', UnrecognizedClientException),
        (_signed(region="eu-west-1"), b'{"x": 1}', InvalidSignatureException),
        (_signed(), b'{"x": 2}', InvalidSignatureException),
        ({"host": "127.0.0.1:8080"}, b"", MissingAuthenticationToken),
        ({"host": "h", "authorization": "Bearer abc"}, b"", InvalidSignatureException),
    ],
    ids=["wrong-secret", "other-key", "other-region", "changed-body", "unsigned", "not-sigv4"],
)
def test_anything_else_is_refused(
    headers: dict[str, str], body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        VERIFIER.verify(_request(headers, body))


def test_a_changed_signed_header_is_refused() -> None:
    headers = _signed()
    headers["x-amzn-sagemaker-target-model"] = "other.tar.gz"
    with pytest.raises(InvalidSignatureException):
        VERIFIER.verify(_request(headers))


def test_botocore_signs_the_target_model_header() -> None:
    signed_headers = _signed()["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "x-amzn-sagemaker-target-model" in signed_headers.split(";")


@pytest.mark.parametrize(
    "header",
    [
        "X-Amzn-SageMaker-Target-Model",
        "X-Amzn-SageMaker-Target-Variant",
        "X-Amzn-SageMaker-Target-Container-Hostname",
    ],
)
def test_an_unsigned_routing_header_is_refused(header: str) -> None:
    # A signature made without the header can't be replayed against another model (or
    # variant, or container) by adding it: the header must be among the signed ones.
    headers = _signed(sign={"Content-Type": "application/json"}, add_after={header: "other"})
    with pytest.raises(InvalidSignatureException, match=header.lower()):
        VERIFIER.verify(_request(headers))


def test_headers_outside_the_sagemaker_family_may_go_unsigned() -> None:
    # botocore itself leaves some out (User-Agent, X-Amzn-Trace-Id); proxies add others.
    VERIFIER.verify(_request(_signed(add_after={"User-Agent": "x", "X-Amzn-Trace-Id": "t"})))


def _verifier_ahead_by(minutes: int) -> SigV4Verifier:
    def clock() -> datetime.datetime:
        now = datetime.datetime.now(datetime.timezone.utc)
        return now + datetime.timedelta(minutes=minutes)

    return SigV4Verifier("AKIDLOCAL", "s3cret", "us-east-1", clock=clock)


def test_a_signature_older_than_15_minutes_is_refused() -> None:
    headers = _signed()
    _verifier_ahead_by(5).verify(_request(headers))
    late = _verifier_ahead_by(16)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        late.verify(_request(headers))


def _guarded_client() -> tuple[httpx.AsyncClient, FakeService]:
    service = FakeService(InvokeResponse(b"ok", None, None, "AllTraffic"))
    app = create_app(lambda: Gateway(service, FakeAdmin()))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=require_sigv4(app, VERIFIER))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080"), service


async def test_the_guard_answers_aws_shaped_403_and_never_invokes() -> None:
    client, service = _guarded_client()
    response = await client.post(
        PATH, content=b"{}", headers={"x-amzn-sagemaker-target-model": "m"}
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"].startswith("MissingAuthenticationToken:")
    assert json.loads(response.content)["Message"] == "Missing Authentication Token"
    assert service.requests == []


async def test_the_guard_passes_a_signed_request_with_its_body() -> None:
    client, service = _guarded_client()
    headers: dict[str, Any] = _signed()
    response = await client.post(PATH, content=b'{"x": 1}', headers=headers)
    assert response.status_code == 200, response.content
    assert service.requests[0].body == b'{"x": 1}'


async def test_the_guard_leaves_ping_open() -> None:
    client, _ = _guarded_client()
    assert (await client.get("/ping")).status_code == 200
