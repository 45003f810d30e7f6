"""What the embedded and docker runtimes share: a loopback port, a log file, ready-waiting."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mme_local.runtime.base import wait_for_ping
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.logs import read_log_tail, read_version, rotate_log
from mme_local.runtime.triton_config import TritonSettings

log = logging.getLogger(__name__)


class LocalTriton:
    """A Triton this machine runs, its SageMaker port on loopback and its output in `log_path`.

    Subclasses start and stop it and say whether it is alive (`check_alive`).
    """

    describe = "tritonserver"
    """How messages name it ("tritonserver", "the Triton container")."""

    def __init__(self, settings: TritonSettings, log_path: Path, version: str | None) -> None:
        self.settings = settings
        self.log_path = log_path
        self._port = settings.port
        self._version = version

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeFailure(f"{self.describe} has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def version(self) -> str | None:
        return self._version

    def check_alive(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 40) -> str:
        return read_log_tail(self.log_path, lines)

    @property
    def log_location(self) -> str:
        return str(self.log_path)

    def _check_version(self) -> None:
        """Refuse a Triton this tool can't drive, once its version is known (default: any)."""

    def _fresh_log(self) -> None:
        """Called before each start: what the log says from now on is this start's."""
        rotate_log(self.log_path)

    async def _wait_ready(self) -> None:
        timeout_s = self.settings.startup_timeout_s
        if await wait_for_ping(self.url, timeout_s, self.check_alive):
            # This start's own banner (the log is fresh), read in a thread.
            banner = await asyncio.to_thread(read_version, self.log_path)
            self._version = banner or self._version
            self._check_version()
            log.info("tritonserver %s ready at %s", self._version, self.url)
            return
        raise RuntimeFailure(
            f"{self.describe} did not answer /ping within {timeout_s:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )
