"""How late the event loop runs its callbacks: the cost of anything that blocks it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from mme_local.metrics import Metrics


class LoopLagMonitor:
    """Sleeps `interval_s` again and again; the overshoot is the loop's lag."""

    def __init__(self, metrics: Metrics, interval_s: float = 0.1) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.max_lag_s = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - before - self.interval_s)
            self.max_lag_s = max(self.max_lag_s, lag)
            self.metrics.event_loop_lag.set(lag)
            self.metrics.event_loop_lag_max.set(self.max_lag_s)
