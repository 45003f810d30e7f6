"""Noticing objects that changed in S3 under models this instance already holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from mme_local.background_task import BackgroundTask
from mme_local.cache.manager import ModelCache
from mme_local.store.source import ModelStore, StoreUnavailable

log = logging.getLogger(__name__)


class ArtifactWatcher(BackgroundTask):
    """Lists the prefix every `interval_s` (in a thread) and tells the cache the ETags."""

    def __init__(
        self,
        store: ModelStore,
        cache: ModelCache,
        interval_s: float,
        others: Sequence[ModelCache] = (),
    ) -> None:
        self.store = store
        self.cache = cache
        self.caches = [cache, *others]
        """Every instance's cache: one listing tells them all."""
        self.interval_s = interval_s

    def start(self) -> None:
        if self.interval_s > 0:
            super().start()

    async def check(self) -> None:
        stored = await asyncio.to_thread(self.store.list_models)
        etags = {item.target_model: item.etag for item in stored}
        for cache in self.caches:
            cache.note_stored_etags(etags)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except StoreUnavailable as error:
                log.debug("artifact check skipped: %s", error)
