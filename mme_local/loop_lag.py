"""How late the event loop runs its callbacks: the cost of anything that blocks it."""

from __future__ import annotations

import asyncio
import time

from mme_local.background_task import BackgroundTask
from mme_local.metrics import Metrics


class LoopLagMonitor(BackgroundTask):
    """Sleeps `interval_s` again and again; the overshoot is the loop's lag."""

    def __init__(self, metrics: Metrics, interval_s: float = 0.1) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.max_lag_s = 0.0

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - before - self.interval_s)
            self.max_lag_s = max(self.max_lag_s, lag)
            self.metrics.event_loop_lag.set(lag)
            self.metrics.event_loop_lag_max.set(self.max_lag_s)
