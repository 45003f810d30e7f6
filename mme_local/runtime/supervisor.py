"""Keeps the model server running: notices it died, restarts it, says so.

A server that can say when its process ends (`wait_exit`, the embedded runtime's pidfd) is
noticed the moment it dies; the others are checked every `poll_s`. Every request fails from a
crash until the restart, so noticing by waiting rather than polling is time taken off each one.

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
from typing import Protocol, runtime_checkable

from mme_local.background_task import BackgroundTask
from mme_local.runtime.base import ModelServer
from mme_local.runtime.errors import RuntimeExited
from mme_local.runtime.restart_policy import RestartPolicy

log = logging.getLogger(__name__)


@runtime_checkable
class ExitWatch(Protocol):
    """A model server whose process end can be awaited."""

    async def wait_exit(self) -> None:
        """Return once the process now running has ended (at once if none runs), whoever
        ended it; never raise for a process that is still running."""


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
        """`poll_s`: how often the server is checked when its exit can't be awaited (a check
        is one `waitpid`, or a flag the docker runtime's log thread sets: cheap enough for 20
        a second); where it can, the check also runs the moment the process ends."""
        self.server = server
        self.on_down = on_down
        self.on_up = on_up
        self.on_restart_attempt = on_restart_attempt
        self.poll_s = poll_s
        self.policy = RestartPolicy(backoff_s, max_backoff_s, stable_s)
        self._sleep = sleep
        self._exit: asyncio.Task[None] | None = None
        self._can_wait = isinstance(server, ExitWatch)
        self.running = True
        """False from the moment the server is found dead until a restart succeeds."""
        self.exits = 0
        """How many times the server was found dead (each one then restarted): work that
        spans a change of this number ran, in part, on a server that is gone."""

    async def _run(self) -> None:
        # The emulator started the server just before supervising it.
        self.policy.started(time.monotonic())
        try:
            while True:
                ended = await self._exit_or_tick()
                try:
                    self.server.check_alive()
                except RuntimeExited as error:
                    log.error("%s", error)
                    self._forget_exit_wait()  # it watched the process that died
                    await self._restart()
                    continue
                if ended:
                    # It ended on purpose (a stop): nothing to restart, and waiting again
                    # would return at once, so back to the poll interval.
                    await asyncio.sleep(self.poll_s)
        finally:
            self._forget_exit_wait()

    def _forget_exit_wait(self) -> None:
        if self._exit is not None:
            self._exit.cancel()
            self._exit = None

    async def _exit_or_tick(self) -> bool:
        """Wait `poll_s`, or less if the server's process ends first; True if it ended."""
        if self._exit is None and self._can_wait:
            assert isinstance(self.server, ExitWatch)
            self._exit = asyncio.ensure_future(self.server.wait_exit())
        if self._exit is None:
            await asyncio.sleep(self.poll_s)
            return False
        done, _ = await asyncio.wait({self._exit}, timeout=self.poll_s)
        if not done:
            return False
        waited, self._exit = self._exit, None  # the next process gets a wait of its own
        if not waited.cancelled() and (error := waited.exception()) is not None:
            # Not fatal: polling alone still notices an exit, only later; said once.
            log.warning("cannot wait for the model server's exit (%s); polling instead", error)
            self._can_wait = False
            return False
        return True

    async def _restart(self) -> None:
        self.running = False
        self.exits += 1
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
