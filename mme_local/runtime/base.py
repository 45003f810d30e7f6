"""What the model cache needs from a model server, whichever way it runs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

MiB = 1024 * 1024


@dataclass(frozen=True)
class TritonSettings:
    """How Triton is started: the same knobs SageMaker's `serve` script reads."""

    port: int | None = None
    """SageMaker front-end port; None picks a free loopback port."""
    thread_count: int = 8
    """SAGEMAKER_TRITON_THREAD_COUNT: threads serving the SageMaker front end."""
    shm_default_bytes: int = 16 * MiB
    """SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE: Python backend shared memory per model."""
    shm_growth_bytes: int = 1 * MiB
    """SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE."""
    log_verbose: int = 0
    """SAGEMAKER_TRITON_LOG_VERBOSE."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    """SAGEMAKER_TRITON_ADDITIONAL_ARGS, already split."""
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 15.0


def triton_arguments(settings: TritonSettings, port: int, repository: str) -> list[str]:
    """Flags as SageMaker's `serve` passes them for a multi-model endpoint."""
    return [
        "--allow-sagemaker=true",
        "--allow-http=false",
        "--allow-grpc=false",
        "--allow-metrics=false",
        f"--sagemaker-port={port}",
        f"--sagemaker-thread-count={settings.thread_count}",
        "--model-control-mode=explicit",
        f"--model-repository={repository}",
        "--model-namespacing=true",
        f"--backend-config=python,shm-default-byte-size={settings.shm_default_bytes}",
        f"--backend-config=python,shm-growth-byte-size={settings.shm_growth_bytes}",
        f"--log-verbose={settings.log_verbose}",
        *settings.extra_args,
    ]


def triton_environment() -> dict[str, str]:
    return {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_TRITON_PING_MODE": "live"}


async def wait_for_ping(url: str, timeout_s: float, check_alive: Callable[[], None]) -> bool:
    """Poll `url`/ping until it answers 200 (True) or `timeout_s` passes (False).

    `check_alive` runs between polls so that a server that died is reported at once.
    """
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            check_alive()
            try:
                if (await client.get("/ping")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    return False


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
    def uses_gpus(self) -> bool:
        """Whether its models may use this machine's GPUs (so the GPU budget applies)."""

    def process_ids(self) -> list[int]:
        """Host PIDs whose memory counts as the server's (for the memory budget)."""

    def log_tail(self, lines: int = 40) -> str: ...

    @property
    def log_location(self) -> str:
        """Where a user reads Triton's own log (quoted in ModelError messages)."""
