"""SageMaker Runtime's modeled errors, serialized in one place.

botocore reads the error code from `x-amzn-ErrorType` (the text before `:`), the message from
the body's `Message`, and ModelError's extra members from body keys of the same names; the
HTTP status never picks the exception class. So every error goes out with all three.

`Message` and `OriginalMessage` are the service model's `Message` shape (at most 2048
characters); longer texts are cut here, where every error is serialized.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from starlette.responses import Response

_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.sagemaker/"

MESSAGE_MAX_CHARS = 2048
"""botocore's sagemaker-runtime model: `Message` and `OriginalMessage` have shape `Message`,
`max: 2048` (a length in characters, as botocore's validation counts it)."""

_TEXT_MEMBERS = ("Message", "OriginalMessage")


def cut_text(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """`text` if it fits in `limit` characters; else its start and a note of how many
    characters were cut, `limit` characters in all (the start of a container's answer usually
    says what went wrong; the whole of it is in the emulator's log)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    while True:  # the note's own length depends on the count it states
        note = f"... [{cut} more characters in the mme-local log]"
        kept = max(0, limit - len(note))
        if len(text) - kept == cut:
            return (text[:kept] + note)[:limit]
        cut = len(text) - kept


class SageMakerError(Exception):
    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str, error_code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.error_code:
            body["ErrorCode"] = self.error_code
        body["Message"] = self.message
        body.update(self.extra)
        for member in _TEXT_MEMBERS:
            if isinstance(body.get(member), str):
                body[member] = cut_text(body[member])
        return body

    def to_response(self, request_id: str) -> Response:
        return Response(
            content=json.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers={
                "x-amzn-ErrorType": self.code + _ERROR_TYPE_SUFFIX,
                "x-amzn-RequestId": request_id,
            },
        )


class ValidationError(SageMakerError):
    code = "ValidationError"
    status = 400


class ModelError(SageMakerError):
    code = "ModelError"
    status = 424

    def __init__(
        self,
        message: str,
        error_code: str,
        original_status: int,
        original_message: str,
        log_stream_arn: str,
    ) -> None:
        super().__init__(
            message,
            error_code,
            OriginalStatusCode=original_status,
            OriginalMessage=original_message,
            LogStreamArn=log_stream_arn,
        )
        self.original_status = original_status


class ModelNotReadyException(SageMakerError):
    code = "ModelNotReadyException"
    status = 429


class InternalFailure(SageMakerError):
    code = "InternalFailure"
    status = 500


class ServiceUnavailable(SageMakerError):
    code = "ServiceUnavailable"
    status = 503


class InternalDependencyException(SageMakerError):
    code = "InternalDependencyException"
    status = 530
