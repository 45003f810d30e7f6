"""A coroutine that runs beside the endpoint for as long as it is up."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundTask:
    """`start()` inside the running loop; `await stop()` cancels it and waits for it to end."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
