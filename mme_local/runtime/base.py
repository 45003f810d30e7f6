"""What the model cache needs from a model server, whichever way it runs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx

# Kept importable from here: the runtimes and tests have always found them in this module.
from mme_local.runtime.triton_config import MiB as MiB
from mme_local.runtime.triton_config import TritonSettings as TritonSettings
from mme_local.runtime.triton_config import triton_arguments as triton_arguments
from mme_local.runtime.triton_config import triton_environment as triton_environment


async def wait_for_ping(url: str, timeout_s: float, check_alive: Callable[[], None]) -> bool:
    """Poll `url`/ping until it answers 200 (True) or `timeout_s` passes (False).

    `check_alive` runs between polls so that a server that died is reported at once.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            check_alive()
            try:
                if (await client.get("/ping")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            # The embedded Triton answers 0.1-0.2 s after it starts, and every request
            # fails during a restart until it does: look often then. A slower start (a
            # container) is looked at less often.
            fast = time.monotonic() - started < _FAST_PING_S
            await asyncio.sleep(0.005 if fast else 0.02)
    return False


_FAST_PING_S = 1.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ModelServer(Protocol):
    """A running Triton speaking the MME container API, embedded or in a container."""

    @property
    def url(self) -> str:
        """Base URL of the container API (`POST /models`, `/ping`, ...)."""

    @property
    def version(self) -> str | None:
        """Triton's server version, once known."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def model_url(self, model_dir: Path) -> str:
        """The `url` to send in a load call for a model folder in the cache."""

    def check_alive(self) -> None:
        """Raise RuntimeExited if the server has ended unexpectedly."""

    @property
    def open_port(self) -> int | None:
        """Its port, when other machines can reach it without authentication; else None."""

    @property
    def uses_gpus(self) -> bool:
        """Whether its models may use this machine's GPUs (so the GPU budget applies)."""

    def process_ids(self) -> list[int]:
        """Host PIDs whose memory counts as the server's (for the memory budget)."""

    def model_process_ids(self, model_name: str) -> list[int] | None:
        """Host PIDs serving only this model (its backend stub), [] where it runs inside the
        server's own process, None where processes can't be seen from here."""

    def log_tail(self, lines: int = 40) -> str: ...

    @property
    def log_location(self) -> str:
        """Where a user reads Triton's own log (quoted in ModelError messages)."""
