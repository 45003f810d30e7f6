"""A Triton that something else runs (a compose service), sharing the cache as a volume.

mme-local neither starts nor stops it: it waits for `/ping` and sends load URLs under
`/opt/ml/models`, where both containers mount the same cache volume.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mme_local.runtime.base import wait_for_ping
from mme_local.runtime.docker_runtime import container_model_url
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.gpus import visible_gpus

log = logging.getLogger(__name__)


class ExternalTriton:
    """Triton's SageMaker front end at a given URL, its models folder shared with us."""

    def __init__(self, url: str, cache_dir: Path, startup_timeout_s: float = 120.0) -> None:
        self._url = url.rstrip("/")
        self.cache_dir = cache_dir
        self.startup_timeout_s = startup_timeout_s

    @property
    def url(self) -> str:
        return self._url

    @property
    def version(self) -> str | None:
        # Triton's SageMaker port serves no metadata route; its log is the service's own.
        return None

    async def start(self) -> None:
        if await wait_for_ping(self._url, self.startup_timeout_s, self.check_alive):
            log.info("Triton at %s answers /ping", self._url)
            return
        raise RuntimeFailure(
            f"Triton at {self._url} did not answer /ping within {self.startup_timeout_s:.0f} s"
        )

    async def stop(self) -> None:
        """Nothing to do: whoever started this Triton stops it."""

    def model_url(self, model_dir: Path) -> str:
        return container_model_url(self.cache_dir, model_dir)

    def check_alive(self) -> None:
        """Its process is out of sight; a dead server shows up as RuntimeUnavailable on a call."""

    @property
    def open_port(self) -> int | None:
        """Whoever runs this Triton decides who reaches it."""
        return None

    @property
    def uses_gpus(self) -> bool:
        # Its GPUs are this machine's (compose runs it here); nvidia-smi sees them.
        return bool(visible_gpus())

    def model_process_ids(self, model_name: str) -> list[int] | None:
        return None

    def process_ids(self) -> list[int]:
        """Its processes live in another PID namespace: memory is not accounted for here."""
        return []

    @property
    def log_location(self) -> str:
        return f"the log of the Triton at {self._url} (e.g. `docker compose logs triton`)"

    def log_tail(self, lines: int = 40) -> str:
        return f"(Triton at {self._url} runs elsewhere; read its own log, e.g. docker compose logs)"
