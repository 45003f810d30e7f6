"""What `mme-local invoke` shows: a summary of the answer, and one line for each way it fails.

Plain functions over bytes and exceptions, so the wording is tested without an endpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

# Values shown per output; the rest is counted, `--raw` prints everything.
SHOWN_VALUES = 4
# A body that names an existing file, or ends like a file name, was likely meant as @file.
_FILE_LIKE = re.compile(r"^[\w./~-]+\.(json|bin|txt|npy|pb|csv)$", re.IGNORECASE)


class InvokeFailed(Exception):
    """The invocation failed; the text is the whole message for the user."""


def read_body(body: str) -> bytes:
    """The payload: `@path` reads the file, anything else is sent as text."""
    if not body.startswith("@"):
        return body.encode()
    path = Path(body[1:]).expanduser()
    try:
        return path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise InvokeFailed(f"--body @{body[1:]}: cannot read {path} ({reason})") from None


def body_warning(body: str) -> str | None:
    """A warning when `--body` looks like a file name given without `@` (it is sent as text)."""
    if body.startswith("@") or "\n" in body or len(body) > 4096:
        return None
    if Path(body).expanduser().is_file() or _FILE_LIKE.match(body):
        return (
            f"warning: --body {body!r} is sent as the text itself; to send the file's "
            f"contents use --body @{body}"
        )
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_line(error: Exception, endpoint_url: str | None, region: str | None) -> str:
    """One line for a failed invocation: AWS's error code and message, or what to do.

    `endpoint_url` is the local gateway (None with `--cloud`).
    """
    if isinstance(error, ClientError):
        details: dict[str, Any] = error.response.get("Error", {})
        code = str(details.get("Code") or "Error")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = _one_line(str(details.get("Message") or error))
        original = error.response.get("OriginalStatusCode")
        where = f"{status}" if status else ""
        if original is not None:
            where += f", the model answered {original}"
        return f"{code} ({where}): {message}" if where else f"{code}: {message}"
    if isinstance(error, NoRegionError):
        return (
            "--cloud needs a region: pass --region, set AWS_DEFAULT_REGION (or AWS_REGION), "
            "or use a profile that has one (--profile, AWS_PROFILE)"
        )
    if isinstance(error, NoCredentialsError):
        return (
            "no AWS credentials found: run `aws configure`, set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --profile"
        )
    if isinstance(error, EndpointConnectionError):
        if endpoint_url is not None:
            return (
                f"no mme-local endpoint answers at {endpoint_url}: start one with "
                "`mme-local up`, or pass --endpoint-url"
            )
        return f"could not reach SageMaker Runtime in {region or 'this region'}: {error}"
    if isinstance(error, ReadTimeoutError):
        return f"no answer before the client's read timeout: {error}"
    if isinstance(error, BotoCoreError):
        return _one_line(str(error))
    return _one_line(f"{type(error).__name__}: {error}")


def _shape_of(tensor: dict[str, Any]) -> str:
    shape = tensor.get("shape")
    return "[" + ", ".join(str(d) for d in shape) + "]" if isinstance(shape, list) else "?"


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [value for item in data for value in _flat(item)]
    return [data]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, str) else str(value)


def summary(payload: bytes, content_type: str) -> list[str]:
    """One line per output tensor of a KServe v2 JSON answer; else the size and a preview."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs):
        lines = []
        for output in outputs:
            values = _flat(output.get("data", []))
            shown = ", ".join(_value(v) for v in values[:SHOWN_VALUES])
            more = f", ... ({len(values)} values)" if len(values) > SHOWN_VALUES else ""
            lines.append(
                f"{output.get('name', '?')}  {output.get('datatype', '?')}  "
                f"{_shape_of(output)}  {shown}{more}"
            )
        return lines
    preview = payload[:200].decode("utf-8", errors="replace")
    cut = " ..." if len(payload) > 200 else ""
    return [f"{len(payload):,} bytes of {content_type}: {_one_line(preview)}{cut}"]


def cold_or_warm(state_before: str | None) -> str:
    """`warm` when the model was loaded before the call, `cold` when it had to load."""
    if state_before is None:
        return ""
    return "warm" if state_before == "loaded" else f"cold (was {state_before})"
