"""Keeps the model server running: notices it died, restarts it with backoff, says so.

Contract: `on_down()` is called once when the server is found dead (requests must fail fast
from then on); `on_up(url)` once it answers again (possibly at a new URL). Restarts are tried
until one succeeds, waiting `backoff_s` doubled after each failure up to `max_backoff_s`;
every attempt is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mme_local.background_task import BackgroundTask
from mme_local.runtime.base import ModelServer
from mme_local.runtime.errors import RuntimeExited

log = logging.getLogger(__name__)


class RuntimeSupervisor(BackgroundTask):
    def __init__(
        self,
        server: ModelServer,
        on_down: Callable[[], None],
        on_up: Callable[[str], None],
        on_restart_attempt: Callable[[], None] = lambda: None,
        poll_s: float = 0.5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.server = server
        self.on_down = on_down
        self.on_up = on_up
        self.on_restart_attempt = on_restart_attempt
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.running = True
        """False from the moment the server is found dead until a restart succeeds."""

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                self.server.check_alive()
            except RuntimeExited as error:
                log.error("%s", error)
                await self._restart()

    async def _restart(self) -> None:
        self.running = False
        self.on_down()
        delay = self.backoff_s
        attempt = 0
        while True:
            attempt += 1
            self.on_restart_attempt()
            log.warning("restarting the model server (attempt %d)", attempt)
            try:
                await self.server.stop()
                await self.server.start()
            except Exception as error:
                log.error(
                    "restart attempt %d failed: %s; next attempt in %.1f s", attempt, error, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.running = True
            self.on_up(self.server.url)
            log.warning("model server restarted; models will load again on their next request")
            return
