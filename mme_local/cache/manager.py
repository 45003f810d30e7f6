"""The model cache: what SageMaker's platform does between the front door and the container.

For each TargetModel there is one state machine (remote -> downloading -> on disk -> loading
-> loaded -> unloading) and at most one transition in flight; every request for the model
waits on that one task. A request pins its model from arrival to answer, and eviction only
ever picks unpinned, idle, loaded models, least recently used first. No lock is held across
I/O: the event loop is the only writer of this state, and each check-then-act below runs
without an `await` between the check and the act.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.extract import extract_stream
from mme_local.cache.layout import model_dir, model_hash
from mme_local.cache.policy import Budgets, EvictionPolicy
from mme_local.metrics import Metrics
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    ModelAlreadyLoaded,
    ModelNotFound,
    RuntimeUnavailable,
)
from mme_local.store.source import ModelStore

log = logging.getLogger(__name__)


class ModelNotReady(Exception):
    """The model is still downloading or loading after the ready timeout; it carries on."""

    def __init__(self, target_model: str, waited_s: float) -> None:
        super().__init__(
            f"Model {target_model} is not ready after {waited_s:.0f} s; "
            "it is still being downloaded or loaded, retry the request"
        )
        self.target_model = target_model


@dataclass(frozen=True)
class Lease:
    """A pinned, loaded model for the duration of one request."""

    entry: ModelEntry
    cache_hit: bool
    waited_s: float

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def target_model(self) -> str:
        return self.entry.target_model


@dataclass(frozen=True)
class Eviction:
    target_model: str
    reason: str
    idle_s: float
    at: float
    freed_memory_bytes: int
    deleted_from_disk: bool


MemoryProbe = Callable[[], int]


class ModelCache:
    def __init__(
        self,
        store: ModelStore,
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
    ) -> None:
        self.store = store
        self.client = client
        self.model_url = model_url
        self.cache_dir = cache_dir
        self.budgets = budgets
        self.policy = EvictionPolicy(budgets)
        self.metrics = metrics
        self.memory_probe = memory_probe
        self.gpu_memory_probe = gpu_memory_probe
        self.ready_timeout_s = ready_timeout_s
        self.load_timeout_s = load_timeout_s
        self.cache_enabled = cache_enabled
        # Least recently used first.
        self._entries: OrderedDict[str, ModelEntry] = OrderedDict()
        self.evictions: deque[Eviction] = deque(maxlen=1000)
        self._runtime_running = True

    # ----- the request path -------------------------------------------------------------

    @asynccontextmanager
    async def acquire(
        self, target_model: str, timeout_s: float | None = None
    ) -> AsyncIterator[Lease]:
        """Yield the model loaded and pinned; download and load it first if needed.

        A cold request waits `timeout_s` (default `ready_timeout_s`) before ModelNotReady.
        """
        if not self._runtime_running:
            raise RuntimeUnavailable("the model server is restarting")
        entry = self._entry(target_model)
        entry.pins += 1
        started = time.perf_counter()
        try:
            hit = entry.state is ModelState.LOADED and entry.transition is None
            if not hit:
                try:
                    wait_s = self.ready_timeout_s if timeout_s is None else timeout_s
                    await asyncio.wait_for(self._until_loaded(entry), wait_s)
                except asyncio.TimeoutError:
                    raise ModelNotReady(target_model, time.perf_counter() - started) from None
                self.metrics.model_loading_wait_time.observe(time.perf_counter() - started)
            entry.touch()
            entry.invocations += 1
            self._entries.move_to_end(target_model)
            yield Lease(entry, hit, time.perf_counter() - started)
        finally:
            entry.pins -= 1
            if not self.cache_enabled and entry.pins == 0 and entry.evictable:
                self._start_unload(entry, "model cache disabled", delete=True)

    def mark_not_loaded(self, lease: Lease) -> None:
        """The container said it doesn't have this model (unloaded behind our back)."""
        entry = lease.entry
        if entry.state is ModelState.LOADED and entry.transition is None:
            log.warning("container lost %s; it will be loaded again", entry.target_model)
            entry.state = ModelState.ON_DISK
            self._update_loaded_gauge()

    # ----- transitions --------------------------------------------------------------------

    def _entry(self, target_model: str) -> ModelEntry:
        entry = self._entries.get(target_model)
        if entry is None:
            entry = ModelEntry(target_model, model_hash(target_model))
            self._entries[target_model] = entry
        return entry

    def _begin(self, entry: ModelEntry, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` as the entry's single transition."""

        async def run() -> None:
            try:
                await work
            finally:
                entry.transition = None

        task = asyncio.get_running_loop().create_task(run())
        entry.transition = task
        # Waiters see the exception; this only keeps asyncio from logging it as unretrieved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _until_loaded(self, entry: ModelEntry) -> None:
        while entry.state is not ModelState.LOADED or entry.transition is not None:
            if entry.transition is None:
                self._begin(entry, self._materialize(entry))
            assert entry.transition is not None
            await asyncio.shield(entry.transition)

    async def _materialize(self, entry: ModelEntry) -> None:
        if entry.state is ModelState.REMOTE:
            await self._download(entry)
        if entry.state is ModelState.ON_DISK:
            await asyncio.wait_for(self._load(entry), self.load_timeout_s)

    async def _download(self, entry: ModelEntry) -> None:
        entry.state = ModelState.DOWNLOADING
        destination = model_dir(self.cache_dir, entry.name)
        shutil.rmtree(destination.parent, ignore_errors=True)
        destination.parent.mkdir(parents=True)
        started = time.perf_counter()
        limit = self.budgets.max_archive_bytes
        try:
            size = await asyncio.to_thread(
                self.store.read_with,
                entry.target_model,
                lambda body: extract_stream(body, destination, limit),
            )
        except BaseException as error:
            entry.state = ModelState.REMOTE
            entry.last_error = str(error)
            shutil.rmtree(destination.parent, ignore_errors=True)
            raise
        elapsed = time.perf_counter() - started
        entry.disk_bytes = size
        entry.downloads += 1
        entry.state = ModelState.ON_DISK
        self.metrics.model_downloading_time.observe(elapsed)
        log.info("downloaded %s (%d bytes) in %.2f s", entry.target_model, size, elapsed)
        self._enforce_disk_budget(keep=entry)

    async def _load(self, entry: ModelEntry) -> None:
        await self._make_room(entry)
        entry.state = ModelState.LOADING
        self._update_loaded_gauge()
        url = self.model_url(model_dir(self.cache_dir, entry.name))
        memory_before = self.memory_probe()
        started = time.perf_counter()
        try:
            try:
                await self.client.load(entry.name, url, entry.target_model)
            except InsufficientMemory:
                if not await self._evict_one("container answered 507 on load", keep=entry):
                    raise
                await self.client.load(entry.name, url, entry.target_model)
            except ModelAlreadyLoaded:
                log.info("container already had %s loaded", entry.target_model)
        except BaseException as error:
            entry.state = ModelState.ON_DISK
            entry.last_error = str(error)
            self._update_loaded_gauge()
            raise
        elapsed = time.perf_counter() - started
        entry.state = ModelState.LOADED
        entry.loads += 1
        entry.last_error = None
        self.metrics.model_loading_time.observe(elapsed)
        self._update_loaded_gauge()
        measured = self.memory_probe()
        entry.memory_bytes = max(0, measured - memory_before)
        log.info(
            "loaded %s in %.2f s (+%d MiB)", entry.target_model, elapsed, entry.memory_bytes >> 20
        )
        await self._enforce_memory_budget(keep=entry)

    def _start_unload(
        self, entry: ModelEntry, reason: str, delete: bool = False
    ) -> asyncio.Task[None]:
        # The state changes now, not when the task first runs, so that a budget check made
        # right after this call already sees the model on its way out.
        entry.state = ModelState.UNLOADING
        return self._begin(entry, self._unload(entry, reason, delete))

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
            self._update_loaded_gauge()
        self.metrics.model_unloading_time.observe(time.perf_counter() - started)
        if delete:
            self._delete_from_disk(entry)
        self._record_eviction(entry, reason, idle, entry.memory_bytes, delete)

    def _record_eviction(
        self, entry: ModelEntry, reason: str, idle_s: float, freed_memory: int, deleted: bool
    ) -> None:
        self.metrics.evictions.labels(reason=reason).inc()
        self.evictions.append(
            Eviction(entry.target_model, reason, idle_s, time.time(), freed_memory, deleted)
        )
        log.info(
            "evicted %s: %s; idle for %.1f s%s",
            entry.target_model,
            reason,
            idle_s,
            "; deleted from disk" if deleted else "",
        )

    def _delete_from_disk(self, entry: ModelEntry) -> None:
        shutil.rmtree(self.cache_dir / entry.name, ignore_errors=True)
        entry.disk_bytes = 0
        entry.state = ModelState.REMOTE

    # ----- budgets --------------------------------------------------------------------------

    def _occupying(self, keep: ModelEntry) -> int:
        # Unloading models are on their way out; their memory is checked by measurement.
        busy = (ModelState.LOADED, ModelState.LOADING)
        return sum(1 for e in self._entries.values() if e is not keep and e.state in busy)

    async def _make_room(self, entry: ModelEntry) -> None:
        while reason := self.policy.count_full(self._occupying(entry)):
            if not await self._evict_one(reason, entry, wait=False):
                log.warning(
                    "loading %s exceeds %s: every loaded model is in use",
                    entry.target_model,
                    reason,
                )
                break
        while entry.memory_bytes and (reason := self._memory_short(entry.memory_bytes)):
            if not await self._evict_one(reason, keep=entry):
                break

    def _memory_short(self, about_to_add: int = 0) -> str | None:
        """Which memory budget is exceeded (measured, plus what a load is about to add)."""
        gpu_used = self.gpu_memory_probe() if self.gpu_memory_probe is not None else None
        return self.policy.memory_short(self.memory_probe(), gpu_used, about_to_add)

    async def _enforce_memory_budget(self, keep: ModelEntry) -> None:
        while reason := self._memory_short():
            if not await self._evict_one(reason, keep=keep):
                log.warning("over the %s and every other model is in use", reason)
                return

    async def _evict_one(self, reason: str, keep: ModelEntry, wait: bool = True) -> bool:
        """Unload the least recently used idle model other than `keep`.

        With `wait` False the unload goes on beside the caller's load: enough for the count
        budget. Memory budgets wait, since they are checked by measuring afterwards.
        """
        candidate = self.policy.victim(self._entries.values(), keep)
        if candidate is None:
            return False
        unload = self._start_unload(candidate, reason)
        if wait:
            await asyncio.shield(unload)
        return True

    def _enforce_disk_budget(self, keep: ModelEntry) -> None:
        victims = self.policy.disk_victims(list(self._entries.values()), self.disk_bytes(), keep)
        for candidate in list(victims):
            idle = candidate.idle_s
            self._delete_from_disk(candidate)
            self._record_eviction(candidate, "disk budget", idle, 0, deleted=True)

    # ----- views and recovery -------------------------------------------------------------------

    def disk_bytes(self) -> int:
        return sum(e.disk_bytes for e in self._entries.values())

    def loaded_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.state is ModelState.LOADED)

    def _update_loaded_gauge(self) -> None:
        self.metrics.loaded_model_count.set(self.loaded_count())
        self.metrics.disk_bytes.set(self.disk_bytes())

    def entries(self) -> list[ModelEntry]:
        """Known models, least recently used first."""
        return list(self._entries.values())

    def runtime_down(self) -> None:
        """The model server died: requests fail fast, and nothing is loaded any more.

        Extracted folders are intact, so each model reloads without a download.
        """
        self._runtime_running = False
        for entry in self._entries.values():
            if entry.state in (ModelState.LOADED, ModelState.LOADING, ModelState.UNLOADING):
                entry.state = ModelState.ON_DISK
        self._update_loaded_gauge()

    def runtime_up(self) -> None:
        """The model server answers again (empty): requests are served from now on."""
        self._runtime_running = True

    async def settle(self) -> None:
        """Wait until no download, load or unload is in flight (background unloads included)."""
        while tasks := [e.transition for e in self._entries.values() if e.transition is not None]:
            await asyncio.wait(tasks)

    async def close(self) -> None:
        tasks = [e.transition for e in self._entries.values() if e.transition is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
