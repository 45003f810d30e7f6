"""The model-list mutex of Triton's SageMaker front end from 2.64 (the 25.11 container), for
model servers that lack it (README, "Fidelity notes").

In `src/sagemaker_server.cc` from v2.64.0 one `std::mutex models_list_mutex_` guards the list
of loaded models. The unload handler holds it from its start to its answer: the unload call,
the wait (polling every 500 ms) for the model to become unavailable, and the repository's
unregistration. Every other user takes it for an instant: an invocation to look its model
up, a load to add its model once loaded, a GET of the list or of one model. So while any
model unloads, invocations, load answers and listings wait, and unloads run one at a time; an
unload does not wait for invocations in flight (they hold the mutex only for the look-up),
and ping never takes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class ModelListMutex:
    """One per model server; used on the event loop only.

    `on_invocation_held` hears how long each invocation waited for unloads (timed-out waits
    included), for the metrics.
    """

    def __init__(self, on_invocation_held: Callable[[float], None] | None = None) -> None:
        self._lock = asyncio.Lock()
        self._on_invocation_held = on_invocation_held

    @asynccontextmanager
    async def held_for_unload(self) -> AsyncIterator[None]:
        """Held for one whole unload call; an unload waits for the one before it."""
        async with self._lock:
            yield

    async def pass_through(self, timeout_s: float | None = None) -> float:
        """Take the mutex and let go at once, as a look-up does; the seconds waited.

        Raises asyncio.TimeoutError when `timeout_s` passes first. A cancelled wait leaves the
        mutex as it was."""
        if not self._lock.locked():
            return 0.0
        started = time.perf_counter()
        await asyncio.wait_for(self._lock.acquire(), timeout_s)
        self._lock.release()
        return time.perf_counter() - started

    async def invocation_passes(self, timeout_s: float) -> float:
        """`pass_through` for an invocation, reported to `on_invocation_held` when it waited."""
        if not self._lock.locked():
            return 0.0
        started = time.perf_counter()
        try:
            return await self.pass_through(timeout_s)
        finally:
            if self._on_invocation_held is not None:
                self._on_invocation_held(time.perf_counter() - started)
