"""A bound on how many downloads (or loads) run at once, with the queue visible in a gauge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Gauge


class Slots:
    """At most `limit` holders at once (None: no limit); `waiting` counts the queue."""

    def __init__(self, limit: int | None, waiting_gauge: Gauge) -> None:
        self._semaphore = asyncio.Semaphore(limit) if limit is not None else None
        self._gauge = waiting_gauge
        self.waiting = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._semaphore is None:
            yield
            return
        self.waiting += 1
        self._gauge.set(self.waiting)
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
            self._gauge.set(self.waiting)
        try:
            yield
        finally:
            self._semaphore.release()
