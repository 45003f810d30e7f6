"""Keeps the model server running: notices it died, restarts it, says so.

Contract: `on_down()` is called once when the server is found dead (requests must fail fast
from then on); `on_up(url)` once it answers again (possibly at a new URL). Restarts are tried
until one succeeds. When to try is `RestartPolicy`'s call: at once after a crash that ends a
stable run, with a doubling delay while failures repeat (a failed start, or a crash soon
after a restart); every attempt is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mme_local.background_task import BackgroundTask
from mme_local.runtime.base import ModelServer
from mme_local.runtime.errors import RuntimeExited
from mme_local.runtime.restart_policy import RestartPolicy

log = logging.getLogger(__name__)


class RuntimeSupervisor(BackgroundTask):
    def __init__(
        self,
        server: ModelServer,
        on_down: Callable[[], None],
        on_up: Callable[[str], None],
        on_restart_attempt: Callable[[], None] = lambda: None,
        poll_s: float = 0.05,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`poll_s`: how often the server is checked. Every request fails from a crash until
        the restart, so this is most of the detection delay; a check is one `waitpid` (or a
        flag the docker runtime's log thread sets), cheap enough for 20 a second."""
        self.server = server
        self.on_down = on_down
        self.on_up = on_up
        self.on_restart_attempt = on_restart_attempt
        self.poll_s = poll_s
        self.policy = RestartPolicy(backoff_s, max_backoff_s, stable_s)
        self._sleep = sleep
        self.running = True
        """False from the moment the server is found dead until a restart succeeds."""

    async def _run(self) -> None:
        # The emulator started the server just before supervising it.
        self.policy.started(time.monotonic())
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
        attempt = 0
        while True:
            delay = self.policy.failed(time.monotonic())
            if delay > 0:
                log.warning(
                    "the model server failed %d times in a row; next attempt in %.1f s",
                    self.policy.failures,
                    delay,
                )
                await self._sleep(delay)
            attempt += 1
            self.on_restart_attempt()
            log.warning("restarting the model server (attempt %d)", attempt)
            try:
                await self.server.stop()
                await self.server.start()
            except Exception as error:
                log.error("restart attempt %d failed: %s", attempt, error)
                continue
            self.policy.started(time.monotonic())
            self.running = True
            self.on_up(self.server.url)
            log.warning("model server restarted; models will load again on their next request")
            return
