"""An optional SigV4 check on InvokeEndpoint, for a gateway that others can reach.

The signature is recomputed with botocore's own signer (`SigV4Auth`) from what arrived: the
method, the raw path and query, the headers the client named in `SignedHeaders`, the body's
SHA-256 and the client's `X-Amz-Date`, with the configured key pair, and compared in constant
time. Failures are answered as AWS answers them: `MissingAuthenticationToken` without an
`Authorization` header, `UnrecognizedClientException` for another access key, and
`InvalidSignatureException` for a wrong or stale signature, or one that leaves out an
`X-Amzn-SageMaker-*` header the request carries (all 403).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mme_local.gateway.errors import SageMakerError
from mme_local.gateway.invocations import endpoint_name_of
from mme_local.gateway.validation import MAX_BODY_BYTES

# sagemaker-runtime signs as "sagemaker" (its signingName in botocore's service model).
SIGNING_NAME = "sagemaker"
# AWS refuses signatures dated more than 15 minutes from its clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)
# Headers that pick what runs (TargetModel, TargetVariant, TargetContainerHostname, ...) must be
# signed when sent, or a captured request could be replayed with another target inside the
# 15-minute window. botocore signs every header it sends, these included.
MUST_SIGN_PREFIX = "x-amzn-sagemaker-"

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class MissingAuthenticationToken(SageMakerError):
    code = "MissingAuthenticationToken"
    status = 403


class UnrecognizedClientException(SageMakerError):
    code = "UnrecognizedClientException"
    status = 403


class InvalidSignatureException(SageMakerError):
    code = "InvalidSignatureException"
    status = 403


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, as received."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class SigV4Verifier:
    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
            datetime.timezone.utc
        ),
    ) -> None:
        self.access_key_id = access_key_id
        self.region = region
        self._signer = SigV4Auth(
            Credentials(access_key_id, secret_access_key), SIGNING_NAME, region
        )
        self._clock = clock

    def verify(self, request: SignedRequest) -> None:
        """Return if the request is signed with the configured key pair, else raise."""
        headers = _header_map(request.headers)
        authorization = headers.get("authorization")
        if authorization is None:
            raise MissingAuthenticationToken("Missing Authentication Token")
        match = _AUTHORIZATION.match(authorization)
        if match is None:
            raise InvalidSignatureException(
                "Authorization header requires AWS4-HMAC-SHA256 with Credential, "
                "SignedHeaders and Signature."
            )
        credential = match["credential"].split("/")
        if len(credential) != 5 or credential[4] != "aws4_request":
            raise InvalidSignatureException(f"Malformed credential scope {match['credential']}.")
        if credential[0] != self.access_key_id:
            raise UnrecognizedClientException(
                "The security token included in the request is invalid."
            )
        timestamp = headers.get("x-amz-date", "")
        self._check_date(timestamp, credential[1])
        signed = match["signed"].split(";")
        if "host" not in signed or any(name not in headers for name in signed):
            raise InvalidSignatureException(
                "SignedHeaders must include host and name sent headers."
            )
        unsigned = sorted(
            name for name in headers if name.startswith(MUST_SIGN_PREFIX) and name not in signed
        )
        if unsigned:
            raise InvalidSignatureException(
                f"SignedHeaders must include {', '.join(unsigned)}: a signature that leaves "
                "out the SageMaker headers could be replayed against another model."
            )
        body_hash = hashlib.sha256(request.body).hexdigest()
        if headers.get("x-amz-content-sha256", body_hash) != body_hash:
            raise InvalidSignatureException("x-amz-content-sha256 does not match the body.")
        expected = self._signature(request, headers, signed, timestamp)
        if not hmac.compare_digest(expected, match["signature"]):
            raise InvalidSignatureException(
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method."
            )

    def _check_date(self, timestamp: str, scope_date: str) -> None:
        try:
            signed_at = datetime.datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(
                tzinfo=datetime.timezone.utc
            )
        except ValueError:
            raise InvalidSignatureException(
                "The request must carry an X-Amz-Date header like 20240101T000000Z."
            ) from None
        if scope_date != timestamp[:8]:
            raise InvalidSignatureException("The credential scope's date is not X-Amz-Date's.")
        now = self._clock()
        if abs(now - signed_at) > MAX_CLOCK_SKEW:
            raise InvalidSignatureException(
                f"Signature expired: {timestamp} is not within 15 minutes of "
                f"{now.strftime(SIGV4_TIMESTAMP)}."
            )

    def _signature(
        self, request: SignedRequest, headers: dict[str, str], signed: list[str], timestamp: str
    ) -> str:
        path = request.raw_path.decode("latin-1")
        query = request.query_string.decode("latin-1")
        url = f"http://{headers['host']}{path}" + (f"?{query}" if query else "")
        aws_request = AWSRequest(
            method=request.method,
            url=url,
            data=request.body,
            headers={name: headers[name] for name in signed},
        )
        aws_request.context["timestamp"] = timestamp
        canonical = self._signer.canonical_request(aws_request)
        string_to_sign = self._signer.string_to_sign(aws_request, canonical)
        return str(self._signer.signature(string_to_sign, aws_request))


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with commas, as SigV4 canonicalises them."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]},{text}" if name in headers else text
    return headers


def require_sigv4(app: ASGIApp, verifier: SigV4Verifier) -> ASGIApp:
    """`app` with InvokeEndpoint refused unless signed; other routes pass unchanged.

    The body is read (up to one byte past the 6 MB limit, so the gateway still answers an
    oversize body with its own ValidationError) before the request reaches `app`, which then
    receives the same messages.
    """

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and endpoint_name_of(scope["path"]) is not None
        ):
            await app(scope, receive, send)
            return
        messages, body = await _buffer(receive)
        if body is not None:
            try:
                verifier.verify(
                    SignedRequest(
                        method=scope["method"],
                        raw_path=scope.get("raw_path") or scope["path"].encode("utf-8"),
                        query_string=scope.get("query_string", b""),
                        headers=tuple(scope["headers"]),
                        body=body,
                    )
                )
            except SageMakerError as error:
                await _send_error(send, error)
                return
        await app(scope, _replay(messages, receive), send)

    return guarded


async def _buffer(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The body's messages, and the body unless it was cut short or passed the limit."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES:
            return messages, None
        if not message.get("more_body", False):
            body = b"".join(m.get("body", b"") for m in messages)
            return messages, body


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _send_error(send: Send, error: SageMakerError) -> None:
    response = error.to_response(str(uuid.uuid4()))
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})
