"""What differs between the stacks' MME container APIs, in one object per stack.

Triton's SageMaker front end and TorchServe's frontend both answer the MME container contract
(`POST /models`, `DELETE /models/{n}`, `POST /models/{n}/invoke`, `GET /models`, `/ping`),
but not in the same words. The container client asks its dialect instead of asking which
stack it talks to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from mme_local.artifacts.lint_torchserve import archive_stack, wrong_stack
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    LoadRejected,
    ModelAlreadyLoaded,
    ModelNotFound,
)

Call = Literal["load", "unload", "invoke", "describe", "list", "ping"]

_ERRORS_BY_STATUS: dict[int, type[ContainerError]] = {
    400: LoadRejected,
    404: ModelNotFound,
    409: ModelAlreadyLoaded,
    507: InsufficientMemory,
}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class TritonDialect:
    """Triton 2.x: errors as `{"error": "..."}`; `GET /models/{n}` answers one object."""

    name: ClassVar[str] = "triton"
    message_key: ClassVar[str] = "error"
    serial_model_control: ClassVar[bool] = True
    """Send loads and unloads one at a time. Triton's SageMaker front end runs each on the
    libevhtp worker thread that received it, and libevhtp hands connections made while its
    first worker is idle to that worker: calls sent together over pooled connections run one
    after another anyway, and each answer waits until the calls queued beside it are done
    (measured on Triton 2.51: four loads sent at once all answered after 5.6 s, four unloads
    after 8 s). One at a time makes that order the cache's, and each answer prompt."""
    unload_settle_s: ClassVar[float] = 0.1
    """An unload of a model waits until this long after that model's load answered. The
    Triton in pytriton 0.7.0 has segfaulted, rarely, on unloads sent within a few milliseconds
    of the same model's load answer; a precaution whose benefit is not proven at that rate
    (`bench/unload_race.py`, `docs/benchmarks.md`)."""

    def error_message(self, body: bytes) -> str:
        parsed = _json(body)
        if isinstance(parsed, dict) and isinstance(parsed.get(self.message_key), str):
            return str(parsed[self.message_key])
        return body.decode(errors="replace")

    def error_class(self, status: int, call: Call) -> type[ContainerError]:
        return _ERRORS_BY_STATUS.get(status, ContainerError)

    def model_description(self, parsed: Any) -> dict[str, Any]:
        return parsed if isinstance(parsed, dict) else {}

    def load_failure_leaves_model(self, status: int) -> bool:
        """Whether a failed load still leaves the model registered (to be unregistered)."""
        return False

    def foreign_model(self, url: str) -> str | None:
        """One line when the folder at `url` holds the other stack's layout, else None (also
        when `url` is not a folder here, as in a container's own file system). Blocking."""
        found = archive_stack(_relative_files(Path(url), depth=3))
        if found is None or found == self.name:
            return None
        return wrong_stack(found, self.name)


class TorchServeDialect(TritonDialect):
    """TorchServe 0.12: errors as `{"code", "type", "message"}`; `GET /models/{n}` answers a
    list (one entry per version); a load whose workers fail answers 500 (a handler that
    raised; nothing stays registered) or 507 (MemoryError; the model stays registered); a
    `url` that does not exist answers 404, where Triton says 400."""

    name: ClassVar[str] = "torchserve"
    message_key: ClassVar[str] = "message"
    serial_model_control: ClassVar[bool] = False
    unload_settle_s: ClassVar[float] = 0.0

    def error_class(self, status: int, call: Call) -> type[ContainerError]:
        if call == "load" and status in (404, 500):
            return LoadRejected
        return super().error_class(status, call)

    def model_description(self, parsed: Any) -> dict[str, Any]:
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
            return parsed[0]
        return super().model_description(parsed)

    def load_failure_leaves_model(self, status: int) -> bool:
        return status == 507


def _relative_files(folder: Path, depth: int) -> list[str]:
    """Files under `folder`, as relative paths, at most `depth` folders down."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        relative = Path(root).relative_to(folder)
        if len(relative.parts) >= depth:
            dirs.clear()
        found.extend((relative / name).as_posix() for name in files)
    return found


ContainerDialect = TritonDialect
"""The interface: Triton's behaviour is the base every other stack's dialect adjusts."""

DIALECTS: dict[str, ContainerDialect] = {
    TritonDialect.name: TritonDialect(),
    TorchServeDialect.name: TorchServeDialect(),
}


def dialect_for(stack: str) -> ContainerDialect:
    return DIALECTS[stack]
