"""One artifact from S3 into its cache folder: bounded, capped by the disk, cancellable.

Extraction runs in a thread; cancelling the download sets a flag the extraction checks per
chunk, and waits for the thread to finish, so nothing is written after a cancellation.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mme_local.cache.extract import ArchiveRejected, SizeLimit, extract_stream
from mme_local.cache.records import DiskFull
from mme_local.cache.slots import Slots
from mme_local.store.source import Fetched

T = TypeVar("T")

# Kept free below the free-space cap, so an extraction never fills the disk to the last byte.
FREE_SPACE_MARGIN = 64 * 1024 * 1024
DISK_BUDGET = "the remaining disk budget"
FREE_SPACE = "free disk space"


class Store(Protocol):
    def read_with(self, target_model: str, consume: Callable[[Any], int]) -> Fetched: ...


class Downloader:
    def __init__(
        self,
        store: Store,
        slots: Slots,
        max_archive_bytes: int,
        disk_budget_bytes: int | None,
        free_disk_bytes: Callable[[], int],
    ) -> None:
        self.store = store
        self.slots = slots
        self.max_archive_bytes = max_archive_bytes
        self.disk_budget_bytes = disk_budget_bytes
        self.free_disk_bytes = free_disk_bytes

    async def fetch(self, target_model: str, destination: Path, kept_bytes: int) -> Fetched:
        """Download and extract into `destination` (its parent is made afresh).

        `kept_bytes` is what the cache holds on disk and can't delete to make room. A refused
        or cancelled download leaves the parent folder empty; an artifact that does not fit
        the disk budget or the free space raises DiskFull.
        """
        cancelled = threading.Event()
        limit = SizeLimit(self.max_archive_bytes)
        try:
            async with self.slots.hold():
                await asyncio.to_thread(_fresh_folder, destination.parent)
                limit = await self._limit(kept_bytes)
                consume = functools.partial(
                    extract_stream, destination=destination, limit=limit, cancelled=cancelled
                )
                return await _in_thread(
                    functools.partial(self.store.read_with, target_model, consume), cancelled
                )
        except BaseException as error:
            # Extraction removed its scratch folder already: what is left is empty.
            shutil.rmtree(destination.parent, ignore_errors=True)
            if (
                isinstance(error, ArchiveRejected)
                and limit.reason in (DISK_BUDGET, FREE_SPACE)
                and limit.reason in str(error)
            ):
                raise DiskFull(str(error)) from error
            raise

    async def _limit(self, kept_bytes: int) -> SizeLimit:
        """The tightest of: the archive cap, what the disk budget can still make room for,
        and the free space of the cache folder's file system."""
        limits = [SizeLimit(self.max_archive_bytes)]
        if self.disk_budget_bytes is not None:
            limits.append(SizeLimit(max(0, self.disk_budget_bytes - kept_bytes), DISK_BUDGET))
        free = await asyncio.to_thread(self.free_disk_bytes)
        limits.append(SizeLimit(max(0, free - FREE_SPACE_MARGIN), FREE_SPACE))
        return min(limits, key=lambda limit: limit.max_bytes)


async def _in_thread(call: Callable[[], T], cancelled: threading.Event) -> T:
    """Run `call` in a thread; on cancellation, set `cancelled` and wait for the thread."""
    future = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancelled.set()
        await asyncio.gather(future, return_exceptions=True)
        raise


def _fresh_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
