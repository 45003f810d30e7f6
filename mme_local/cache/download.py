"""One artifact from S3 into its cache folder: capped by its disk reservation and the free
space, cancellable, run in the cache's own extraction threads.

Cancelling the download sets a flag the extraction checks per chunk, and waits for the thread
to finish, so nothing is written after a cancellation.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mme_local.cache.extract import ArchiveRejected, SizeLimit, extract_stream
from mme_local.cache.records import DiskFull
from mme_local.store.source import Fetched

T = TypeVar("T")

# Kept free below the free-space cap, so an extraction never fills the disk to the last byte.
FREE_SPACE_MARGIN = 64 * 1024 * 1024
RESERVED = "the disk reserved for this download"
FREE_SPACE = "free disk space"


class Store(Protocol):
    def read_with(self, target_model: str, consume: Callable[[Any], int]) -> Fetched: ...

    def stat(self, target_model: str) -> tuple[int, str | None]:
        """The archive's size in bytes and its ETag (ObjectMissing if there is none)."""
        ...


class OutgrewReservation(Exception):
    """The archive expanded past the disk reserved for it (a larger reservation may fit)."""


class Downloader:
    def __init__(
        self,
        store: Store,
        pool: Executor,
        max_archive_bytes: int,
        free_disk_bytes: Callable[[], int],
    ) -> None:
        self.store = store
        self.pool = pool
        self.max_archive_bytes = max_archive_bytes
        self.free_disk_bytes = free_disk_bytes

    async def fetch(self, target_model: str, destination: Path, reserved: int | None) -> Fetched:
        """Download and extract into `destination` (its parent is made afresh).

        A refused or cancelled download leaves the parent folder empty. Past `reserved`
        it raises OutgrewReservation; past the free space, DiskFull.
        """
        cancelled = threading.Event()
        limit = SizeLimit(self.max_archive_bytes)
        try:
            await run_in(self.pool, functools.partial(_fresh_folder, destination.parent))
            limit = await self._limit(reserved)
            consume = functools.partial(
                extract_stream, destination=destination, limit=limit, cancelled=cancelled
            )
            return await _cancellable(
                self.pool, functools.partial(self.store.read_with, target_model, consume), cancelled
            )
        except BaseException as error:
            # Extraction removed its scratch folder already: what is left is empty.
            await asyncio.shield(
                run_in(self.pool, functools.partial(shutil.rmtree, destination.parent, True))
            )
            if isinstance(error, ArchiveRejected) and limit.reason in str(error):
                if limit.reason == RESERVED:
                    raise OutgrewReservation(str(error)) from error
                if limit.reason == FREE_SPACE:
                    raise DiskFull(str(error)) from error
            raise

    async def _limit(self, reserved: int | None) -> SizeLimit:
        """The tightest of: the archive cap, the reservation and the free space."""
        limits = [SizeLimit(self.max_archive_bytes)]
        if reserved is not None:
            limits.append(SizeLimit(reserved, RESERVED))
        free = await run_in(self.pool, self.free_disk_bytes)
        limits.append(SizeLimit(max(0, free - FREE_SPACE_MARGIN), FREE_SPACE))
        return min(limits, key=lambda limit: limit.max_bytes)


async def run_in(pool: Executor, call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, call)


async def _cancellable(pool: Executor, call: Callable[[], T], cancelled: threading.Event) -> T:
    """Run `call` in `pool`; on cancellation, set `cancelled` and wait for the thread."""
    future = asyncio.get_running_loop().run_in_executor(pool, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancelled.set()
        await asyncio.gather(future, return_exceptions=True)
        raise


def _fresh_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
