"""What the model cache needs from a model server, whichever way it runs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from mme_local.runtime.http1 import Http1Pool

# Kept importable from here: the runtimes and tests have always found them in this module.
from mme_local.runtime.triton_config import MiB as MiB
from mme_local.runtime.triton_config import TritonSettings as TritonSettings
from mme_local.runtime.triton_config import triton_arguments as triton_arguments
from mme_local.runtime.triton_config import triton_environment as triton_environment


async def wait_for_ping(url: str, timeout_s: float, check_alive: Callable[[], None]) -> bool:
    """Poll `url`/ping until it answers 200 (True) or `timeout_s` passes (False).

    `check_alive` runs between polls so that a server that died is reported at once.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        return await _wait_for_ping_httpx(url, timeout_s, check_alive)
    # The warm path's own minimal client: a general-purpose one took ~40 ms to set up and
    # ~40 ms more for its first request, and a restart waits on this poll.
    pool = Http1Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    started = time.monotonic()
    try:
        while time.monotonic() < started + timeout_s:
            check_alive()
            try:
                if (await pool.request("GET", "/ping", {}, b"", 2.0)).status == 200:
                    return True
            except (OSError, asyncio.TimeoutError):  # refused, reset, no answer yet
                pass
            await asyncio.sleep(_ping_pause(time.monotonic() - started))
    finally:
        pool.close()
    return False


async def _wait_for_ping_httpx(url: str, timeout_s: float, check_alive: Callable[[], None]) -> bool:
    """`wait_for_ping` for a URL the minimal client can't speak (https)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while time.monotonic() < started + timeout_s:
            check_alive()
            try:
                if (await client.get("/ping")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(_ping_pause(time.monotonic() - started))
    return False


def _ping_pause(waited_s: float) -> float:
    # The embedded Triton answers 0.1-0.2 s after it starts, and every request fails during
    # a restart until it does: look often then. A slower start (a container) less often.
    return 0.005 if waited_s < 1.0 else 0.02


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
