"""The model cache: what SageMaker's platform does between the front door and the container.

For each TargetModel there is one state machine (remote -> downloading -> on disk -> loading
-> loaded -> unloading) and at most one transition in flight; every request for the model
waits on that one task. A request pins its model from arrival to answer, and eviction only
ever picks unpinned, idle, loaded models, least recently used first. No lock is held across
I/O: the event loop is the only writer of this state, and each check-then-act below runs
without an `await` between the check and the act. Anything that blocks (probes, extraction,
deleting folders) runs in a thread; every transition ends in a consistent state whatever
raises, times out or is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mme_local.cache.download import Downloader, Store
from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.layout import free_bytes, model_dir, move_aside
from mme_local.cache.memory import MemoryMeter, MemoryProbe, ModelMemoryProbe
from mme_local.cache.policy import Budgets, EvictionPolicy
from mme_local.cache.records import EvictionLog, Lease, ModelLoadTimeout, ModelNotReady
from mme_local.cache.registry import ModelRegistry
from mme_local.cache.slots import Slots
from mme_local.metrics import Metrics
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    ModelAlreadyLoaded,
    ModelNotFound,
    RuntimeUnavailable,
)

__all__ = ["Lease", "ModelCache", "ModelLoadTimeout", "ModelNotReady"]

log = logging.getLogger(__name__)


class ModelCache:
    def __init__(
        self,
        store: Store,
        client: ContainerClient,
        model_url: Callable[[Path], str],
        cache_dir: Path,
        budgets: Budgets,
        metrics: Metrics,
        memory_probe: MemoryProbe,
        ready_timeout_s: float = 60.0,
        load_timeout_s: float = 360.0,
        cache_enabled: bool = True,
        gpu_memory_probe: MemoryProbe | None = None,
        model_memory_probe: ModelMemoryProbe | None = None,
        max_parallel_downloads: int | None = None,
        max_parallel_loads: int | None = None,
        free_disk_bytes: Callable[[], int] | None = None,
        max_stale_entries: int = 10_000,
    ) -> None:
        self.store = store
        self.client = client
        self.model_url = model_url
        self.cache_dir = cache_dir
        self.budgets = budgets
        self.policy = EvictionPolicy(budgets)
        self.metrics = metrics
        self.memory = MemoryMeter(memory_probe, gpu_memory_probe, model_memory_probe)
        self.ready_timeout_s = ready_timeout_s
        self.load_timeout_s = load_timeout_s
        self.cache_enabled = cache_enabled
        self._downloader = Downloader(
            store,
            Slots(max_parallel_downloads, metrics.downloads_waiting),
            budgets.max_archive_bytes,
            budgets.disk_bytes,
            free_disk_bytes or functools.partial(free_bytes, cache_dir),
        )
        self._loads = Slots(max_parallel_loads, metrics.loads_waiting)
        self.models = ModelRegistry(max_stale_entries)
        self._evictions = EvictionLog(metrics)
        self.evictions = self._evictions.records
        self._runtime_running = True

    # ----- the request path -------------------------------------------------------------

    @asynccontextmanager
    async def acquire(
        self, target_model: str, timeout_s: float | None = None
    ) -> AsyncIterator[Lease]:
        """Yield the model loaded and pinned; download and load it first if needed.

        A cold model is waited for `timeout_s` (default: the ready timeout), then
        ModelNotReady while the download and load go on.
        """
        if not self._runtime_running:
            raise RuntimeUnavailable("the model server is restarting")
        entry = self.models.entry(target_model)
        entry.pins += 1
        started = time.perf_counter()
        try:
            hit = entry.state is ModelState.LOADED and entry.transition is None
            if not hit:
                wait_s = self.ready_timeout_s if timeout_s is None else timeout_s
                try:
                    await asyncio.wait_for(self._until_loaded(entry), max(0.0, wait_s))
                except asyncio.TimeoutError:
                    raise ModelNotReady(target_model, time.perf_counter() - started) from None
                self.metrics.model_loading_wait_time.observe(time.perf_counter() - started)
            self.models.used(entry)
            yield Lease(entry, hit, time.perf_counter() - started)
        finally:
            entry.pins -= 1
            self._settled(entry)

    def mark_not_loaded(self, lease: Lease) -> None:
        """The container said it doesn't have this model (unloaded behind our back)."""
        entry = lease.entry
        if entry.state is ModelState.LOADED and entry.transition is None:
            log.warning("container lost %s; it will be loaded again", entry.target_model)
            entry.state = ModelState.ON_DISK
            self._update_gauges()

    async def make_room(self, lease: Lease, reason: str) -> bool:
        """Unload one idle model other than the leased one (e.g. after a 507 on invoke)."""
        return await self._evict_one(reason, keep=lease.entry)

    # ----- transitions --------------------------------------------------------------------

    def _begin(
        self,
        entry: ModelEntry,
        work: Callable[[], Coroutine[Any, Any, None]],
        if_never_started: ModelState | None = None,
    ) -> asyncio.Task[None]:
        """Run `work()` as the entry's single transition.

        A task cancelled before its first step never enters `run`, so its clean-up is done
        by the done-callback: the transition is cleared and the state set back to
        `if_never_started` (what it was before the transition was announced).
        """

        async def run() -> None:
            try:
                await work()
            finally:
                if entry.transition is task:
                    entry.transition = None
                self._settled(entry)

        task = asyncio.get_running_loop().create_task(run())
        entry.transition = task

        def done(finished: asyncio.Task[None]) -> None:
            if entry.transition is finished:
                entry.transition = None
                if if_never_started is not None:
                    entry.state = if_never_started
                self._update_gauges()
            # Waiters see the exception; this only keeps asyncio from logging it.
            if not finished.cancelled():
                finished.exception()

        task.add_done_callback(done)
        return task

    def _settled(self, entry: ModelEntry) -> None:
        """Called whenever a pin or a transition ends: apply what waited for a quiet model."""
        if entry.pins or entry.transition is not None:
            return
        if not self.cache_enabled and entry.evictable:
            # Also for a load that finished after its requests gave up (429).
            self._start_unload(entry, "model cache disabled", delete=True)
        elif entry.state is ModelState.REMOTE and entry.downloads == 0:
            self.models.forget_later(entry)

    async def _until_loaded(self, entry: ModelEntry) -> None:
        while entry.state is not ModelState.LOADED or entry.transition is not None:
            if entry.transition is None:
                self._begin(entry, functools.partial(self._materialize, entry))
            assert entry.transition is not None
            await asyncio.shield(entry.transition)

    async def _materialize(self, entry: ModelEntry) -> None:
        if entry.state is ModelState.REMOTE:
            await self._download(entry)
        if entry.state is ModelState.ON_DISK:
            try:
                await asyncio.wait_for(self._load(entry), self.load_timeout_s)
            except asyncio.TimeoutError:
                await self._unload_ghost(entry)
                raise ModelLoadTimeout(entry.target_model, self.load_timeout_s) from None

    async def _unload_ghost(self, entry: ModelEntry) -> None:
        """The container may still be loading a model we gave up on: ask it to drop it."""
        log.warning(
            "loading %s took over %.0f s; unloading it", entry.target_model, self.load_timeout_s
        )
        try:
            await self.client.unload(entry.name, entry.target_model)
        except (ModelNotFound, RuntimeUnavailable, ContainerError) as error:
            log.warning("unload after the load timeout of %s: %s", entry.target_model, error)

    async def _download(self, entry: ModelEntry) -> None:
        entry.state = ModelState.DOWNLOADING
        started = time.perf_counter()
        try:
            fetched = await self._downloader.fetch(
                entry.target_model,
                model_dir(self.cache_dir, entry.name),
                self.models.kept_disk_bytes(),
            )
        except BaseException as error:
            entry.state = ModelState.REMOTE
            entry.last_error = str(error)
            raise
        elapsed = time.perf_counter() - started
        self.models.set_disk_bytes(entry, fetched.size)
        entry.etag = fetched.etag
        entry.artifact_changed = False
        entry.downloads += 1
        entry.state = ModelState.ON_DISK
        self.metrics.model_downloading_time.observe(elapsed)
        log.info("downloaded %s (%d bytes) in %.2f s", entry.target_model, fetched.size, elapsed)
        await self._enforce_disk_budget(keep=entry)

    async def _load(self, entry: ModelEntry) -> None:
        try:
            await self._make_room(entry)
            entry.state = ModelState.LOADING
            self._update_gauges()
            url = self.model_url(model_dir(self.cache_dir, entry.name))
            async with self._loads.hold():
                others_busy = self.models.others_in_transition(entry)
                before = None if others_busy else await self.memory.host_used()
                started = time.perf_counter()
                await self._load_call(entry, url)
        except BaseException as error:
            if entry.state is ModelState.LOADING:
                entry.state = ModelState.ON_DISK
            entry.last_error = str(error)
            self._update_gauges()
            raise
        elapsed = time.perf_counter() - started
        entry.state = ModelState.LOADED
        entry.loads += 1
        entry.last_error = None
        self.metrics.model_loading_time.observe(elapsed)
        self._update_gauges()
        await self._record_memory(entry, before)
        log.info(
            "loaded %s in %.2f s (%s MiB)",
            entry.target_model,
            elapsed,
            entry.memory_bytes >> 20 if entry.memory_measured else "?",
        )
        await self._enforce_memory_budget(keep=entry)

    async def _load_call(self, entry: ModelEntry, url: str) -> None:
        try:
            await self.client.load(entry.name, url, entry.target_model)
        except InsufficientMemory:
            if not await self._evict_one("container answered 507 on load", keep=entry):
                raise
            await self.client.load(entry.name, url, entry.target_model)
        except ModelAlreadyLoaded:
            log.info("container already had %s loaded", entry.target_model)

    async def _record_memory(self, entry: ModelEntry, before: int | None) -> None:
        """The model's own memory where the runtime can tell, else the growth of the total,
        trusted only when no other transition ran meanwhile."""
        own = await self.memory.model_used(entry.name)
        if own is not None:
            entry.memory_bytes, entry.memory_measured = own, True
            return
        if before is None or self.models.others_in_transition(entry):
            entry.memory_measured = False
            return
        after = await self.memory.host_used()
        entry.memory_bytes, entry.memory_measured = max(0, after - before), True

    def _start_unload(
        self, entry: ModelEntry, reason: str, delete: bool = False
    ) -> asyncio.Task[None]:
        # The state changes now, not when the task first runs, so that a budget check made
        # right after this call already sees the model on its way out.
        previous = entry.state
        entry.state = ModelState.UNLOADING
        return self._begin(entry, functools.partial(self._unload, entry, reason, delete), previous)

    async def _unload(self, entry: ModelEntry, reason: str, delete: bool) -> None:
        idle = entry.idle_s
        started = time.perf_counter()
        try:
            await self.client.unload(entry.name, entry.target_model)
        except ModelNotFound:
            pass
        except (RuntimeUnavailable, ContainerError) as error:
            # The model server is gone or confused; it no longer serves this model either way.
            log.warning("unload of %s failed: %s", entry.target_model, error)
        finally:
            entry.state = ModelState.ON_DISK
            entry.unloads += 1
            self._update_gauges()
        self.metrics.model_unloading_time.observe(time.perf_counter() - started)
        if delete:
            await self._delete_from_disk(entry)
        self._evictions.record(entry, reason, idle, entry.memory_bytes, delete)

    async def _delete_from_disk(self, entry: ModelEntry) -> None:
        # Renamed away at once, so the state and the disk agree from here on (a new download
        # of this model starts clean); deleted in a thread, since a big model takes a while.
        trash = move_aside(self.cache_dir / entry.name)
        self.models.set_disk_bytes(entry, 0)
        entry.state = ModelState.REMOTE
        if trash is not None:
            await asyncio.to_thread(shutil.rmtree, trash, True)

    # ----- budgets --------------------------------------------------------------------------

    async def _make_room(self, entry: ModelEntry) -> None:
        while reason := self.policy.count_full(self.models.occupying(entry)):
            if not await self._evict_one(reason, entry, wait=False):
                log.warning("%s exceeds %s: every model is in use", entry.target_model, reason)
                break
        while entry.memory_bytes and (reason := await self._memory_short(entry.memory_bytes)):
            if not await self._evict_one(reason, keep=entry):
                break

    async def _memory_short(self, about_to_add: int = 0) -> str | None:
        return await self.memory.short(self.policy, about_to_add)

    async def _enforce_memory_budget(self, keep: ModelEntry) -> None:
        while reason := await self._memory_short():
            if not await self._evict_one(reason, keep=keep):
                log.warning("over the %s and every other model is in use", reason)
                return

    async def _evict_one(self, reason: str, keep: ModelEntry, wait: bool = True) -> bool:
        """Unload the least recently used idle model other than `keep`.

        With `wait` False the unload goes on beside the caller's load: enough for the count
        budget. Memory budgets wait, since they are checked by measuring afterwards.
        """
        candidate = self.policy.victim(self.models, keep)
        if candidate is None:
            return False
        unload = self._start_unload(candidate, reason)
        if wait:
            await asyncio.shield(unload)
        return True

    async def _enforce_disk_budget(self, keep: ModelEntry) -> None:
        victims = self.policy.disk_victims(list(self.models), self.models.disk_bytes, keep)
        for candidate in list(victims):
            idle = candidate.idle_s
            await self._delete_from_disk(candidate)
            self._evictions.record(candidate, "disk budget", idle, 0, deleted=True)

    # ----- views and recovery -------------------------------------------------------------------

    def disk_bytes(self) -> int:
        return self.models.disk_bytes

    def loaded_count(self) -> int:
        return self.models.loaded_count()

    def _update_gauges(self) -> None:
        self.metrics.loaded_model_count.set(self.loaded_count())
        self.metrics.disk_bytes.set(self.models.disk_bytes)

    def entries(self) -> list[ModelEntry]:
        """Known models, least recently used first."""
        return list(self.models)

    def note_stored_etags(self, etags: Mapping[str, str | None]) -> None:
        """Compare what S3 holds now with what was downloaded; flag and count changes.

        As on SageMaker, a changed object is not reloaded: this instance keeps serving the
        bytes it has until the model leaves its disk.
        """
        for target in self.models.flag_changed(etags):
            self.metrics.artifact_changes.inc()
            log.warning(
                "s3 object for %s changed since it was downloaded; this instance keeps serving "
                "the old bytes until the model leaves its disk (publish changes under new names)",
                target,
            )

    def runtime_down(self) -> None:
        """The model server died: requests fail fast, and nothing is loaded any more.

        Extracted folders are intact, so each model reloads without a download.
        """
        self._runtime_running = False
        for entry in self.models:
            if entry.state in (ModelState.LOADED, ModelState.LOADING, ModelState.UNLOADING):
                entry.state = ModelState.ON_DISK
        self._update_gauges()

    def runtime_up(self) -> None:
        """The model server answers again (empty): requests are served from now on."""
        self._runtime_running = True

    async def settle(self) -> None:
        """Wait until no download, load or unload is in flight (background unloads included)."""
        while tasks := [
            e.transition
            for e in self.models
            if e.transition is not None and not e.transition.done()
        ]:
            await asyncio.wait(tasks)

    async def close(self) -> None:
        """Cancel every transition and wait for each, extraction threads included."""
        tasks = [e.transition for e in self.models if e.transition is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
