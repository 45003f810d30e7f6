"""The live model cache: the state machine (`cache.machine`) plus an executor that does its
commands with real I/O and feeds the results back as events.

Every decision (what to download, load, unload or delete, which request is answered how) is
the machine's, taken in one synchronous step per event; this module only performs the work:
S3 probes and deletions in a small I/O pool, extraction in its own bounded pool, memory probes
in another (so a burst of downloads never delays a load's probe), container calls on the event
loop. Each piece of work reports back whatever happens to it (success, failure, timeout,
cancellation), so the machine never waits on work that has ended.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mme_local.cache.download import Downloader, OutgrewReservation, Store, run_in
from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.layout import free_bytes, model_dir, model_hash, move_aside
from mme_local.cache.machine import (
    Answer,
    CacheMachine,
    Command,
    Delete,
    Download,
    Evicted,
    Load,
    Probe,
    Unload,
)
from mme_local.cache.memory import MemoryMeter, MemoryProbe, ModelMemoryProbe
from mme_local.cache.policy import Budgets
from mme_local.cache.records import (
    Eviction,
    Lease,
    LoadRecord,
    ModelLoadTimeout,
    ModelNotReady,
    UnloadRecord,
)
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

_DEFAULT_EXTRACTIONS = 8


@dataclass(slots=True)
class _Turn:
    """One load or unload call's time at the model server, as the replay queues it."""

    began: float
    ended: float = 0.0

    @property
    def took(self) -> float:
        return max(0.0, self.ended - self.began)


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
        serial_model_control: bool = False,
        instance: int = 0,
    ) -> None:
        self.instance = instance
        """Which of the endpoint's instances this cache serves (metrics and views name it)."""
        self.store = store
        self.client = client
        self.model_url = model_url
        self.cache_dir = cache_dir
        self.budgets = budgets
        self.metrics = metrics
        self.memory = MemoryMeter(memory_probe, gpu_memory_probe, model_memory_probe)
        self.ready_timeout_s = ready_timeout_s
        self.load_timeout_s = load_timeout_s
        self.cache_enabled = cache_enabled
        self.machine = CacheMachine(
            budgets,
            cache_enabled=cache_enabled,
            max_parallel_downloads=max_parallel_downloads,
            max_parallel_loads=max_parallel_loads,
            clock=time.monotonic,
            wall_clock=time.time,
            name_of=model_hash,
            track_gpu=gpu_memory_probe is not None,
        )
        self._extract_pool = ThreadPoolExecutor(
            max_parallel_downloads or _DEFAULT_EXTRACTIONS, thread_name_prefix="mme-extract"
        )
        self._probe_pool = ThreadPoolExecutor(2, thread_name_prefix="mme-probe")
        self._io_pool = ThreadPoolExecutor(2, thread_name_prefix="mme-io")
        self._downloader = Downloader(
            store,
            self._extract_pool,
            budgets.max_archive_bytes,
            free_disk_bytes or functools.partial(free_bytes, cache_dir),
        )
        self._ids = itertools.count()
        self._answers: dict[int, asyncio.Future[None]] = {}
        self._work: set[asyncio.Task[None]] = set()
        self._unloads: dict[str, asyncio.Task[None]] = {}
        self._download_s: dict[str, float] = {}
        """Seconds each model spent downloading: its load timeout covers both."""
        self._probe_s: dict[str, float] = {}
        """Seconds the size lookup before a model's download took (part of its download)."""
        self._took: dict[str, tuple[float, float]] = {}
        """Model -> its last load's own (download s, load s), for the requests it answers."""
        self.control_observer: Callable[[LoadRecord | UnloadRecord], None] | None = None
        """Told of each load's and unload's own time and end (`up --trace`)."""
        self._base_exact = False
        """Whether a quiet load has measured the model server's own memory since it started."""
        self._control_lane = asyncio.Lock() if serial_model_control else None
        """Held across each load and unload call when the container runs them one at a
        time anyway (`ContainerDialect.serial_model_control`); FIFO, so in the cache's order."""
        self._lane_free_at = 0.0
        """When the last load or unload that held the lane ended (perf_counter)."""
        self._closing = False

    # ----- the request path -------------------------------------------------------------

    @asynccontextmanager
    async def acquire(
        self, target_model: str, timeout_s: float | None = None
    ) -> AsyncIterator[Lease]:
        """Yield the model loaded and pinned; download and load it first if needed.

        A cold model is waited for `timeout_s` (default: the ready timeout), then
        ModelNotReady while the download and load go on.
        """
        if not self.machine.runtime_running:
            raise RuntimeUnavailable("the model server is restarting")
        request = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[request] = answer
        started = time.perf_counter()
        entry = self.machine.request(request, target_model)
        hit = entry.state is ModelState.LOADED and request not in entry.waiters
        self._dispatch()
        ended = False
        try:
            if not hit:
                wait_s = self.ready_timeout_s if timeout_s is None else timeout_s
                try:
                    await asyncio.wait_for(asyncio.shield(answer), max(0.0, wait_s))
                except asyncio.TimeoutError:
                    if self.machine.abandon(request, entry):
                        ended = True
                        self._dispatch()
                        raise ModelNotReady(target_model, time.perf_counter() - started) from None
                answer.result()
                self.metrics.model_loading_wait_time.observe(time.perf_counter() - started)
            took = (None, None) if hit else self._took.get(entry.target_model, (None, None))
            download_s, load_s = took
            yield Lease(
                entry, hit, time.perf_counter() - started, download_s, load_s, self.instance
            )
        finally:
            self._answers.pop(request, None)
            if not ended:
                if not self.machine.abandon(request, entry):
                    self.machine.done(entry)
                self._dispatch()

    def mark_not_loaded(self, lease: Lease) -> None:
        """The container said it doesn't have this model (unloaded behind our back)."""
        if lease.entry.state is ModelState.LOADED:
            log.warning("container lost %s; it will be loaded again", lease.target_model)
        self.machine.container_lost(lease.entry)
        self._dispatch()

    async def make_room(self, lease: Lease, reason: str) -> bool:
        """Unload one idle model other than the leased one (e.g. after a 507 on invoke)."""
        victim = self.machine.make_room(lease.entry, reason)
        self._dispatch()
        if victim is None:
            return False
        unload = self._unloads.get(victim.target_model)
        if unload is not None:
            await asyncio.shield(unload)
        return True

    # ----- carrying out the machine's commands ---------------------------------------------

    def _dispatch(self) -> None:
        outbox = self.machine.outbox
        while outbox:
            commands = list(outbox)
            outbox.clear()
            for command in commands:
                self._perform(command)
        self._update_gauges()

    def _perform(self, command: Command) -> None:
        if isinstance(command, Answer):
            answer = self._answers.get(command.request)
            if answer is not None and not answer.done():
                if command.error is None:
                    answer.set_result(None)
                else:
                    answer.set_exception(command.error)
        elif isinstance(command, Evicted):
            self._evicted(command.record)
        elif isinstance(command, Delete):
            # Renamed away at once, so a new download of this model starts clean; deleted in
            # a thread, since a big model takes a while.
            trash = move_aside(self.cache_dir / command.entry.name)
            if trash is not None:
                self._spawn(run_in(self._io_pool, functools.partial(shutil.rmtree, trash, True)))
        elif self._closing:
            return
        elif isinstance(command, Probe):
            self._spawn(self._probe(command.entry, time.perf_counter()))
        elif isinstance(command, Download):
            # Timed from here, not from when the task first runs, and with the size lookup
            # before it: the replay starts a download when the request asks for it, and two
            # downloads that end a fraction of a millisecond apart must end in the same order.
            self._spawn(self._download(command.entry, command.reserved, time.perf_counter()))
        elif isinstance(command, Load):
            self._spawn(self._load(command.entry, time.perf_counter()))
        elif isinstance(command, Unload):
            unload = self._unload(command.entry, command.reason, command.ghost, time.perf_counter())
            task = self._spawn(unload)
            self._unloads[command.entry.target_model] = task

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def _probe(self, entry: ModelEntry, started: float) -> None:
        try:
            size, _ = await run_in(
                self._io_pool, functools.partial(self.store.stat, entry.target_model)
            )
        except BaseException as error:
            self.machine.probe_failed(entry, error)
            self._dispatch()
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        self._probe_s[entry.name] = time.perf_counter() - started
        self.machine.probed(entry, size)
        self._dispatch()

    async def _download(self, entry: ModelEntry, reserved: int | None, started: float) -> None:
        started -= self._probe_s.pop(entry.name, 0.0)
        try:
            fetched = await asyncio.wait_for(
                self._downloader.fetch(
                    entry.target_model, model_dir(self.cache_dir, entry.name), reserved
                ),
                self.load_timeout_s,
            )
        except OutgrewReservation as error:
            self.machine.download_failed(entry, error, outgrew=True)
        except asyncio.TimeoutError:
            timed_out = ModelLoadTimeout(entry.target_model, self.load_timeout_s)
            self.machine.download_failed(entry, timed_out, outgrew=False)
        except BaseException as error:
            self.machine.download_failed(entry, error, outgrew=False)
            self._dispatch()
            if isinstance(error, asyncio.CancelledError):
                raise
            log.warning("download of %s failed: %s", entry.target_model, error)
            return
        else:
            elapsed = time.perf_counter() - started
            self._download_s[entry.name] = elapsed
            self.metrics.model_downloading_time.observe(elapsed)
            log.info(
                "downloaded %s (%d bytes) in %.2f s", entry.target_model, fetched.size, elapsed
            )
            self.machine.downloaded(entry, fetched.size, fetched.etag)
        self._dispatch()

    async def _load(self, entry: ModelEntry, issued: float) -> None:
        # The load timeout covers this model's own download and load, not its time queued.
        downloaded_s = self._download_s.pop(entry.name, 0.0)
        remaining = max(0.0, self.load_timeout_s - downloaded_s)
        before = await self._total_if_quiet(entry)
        url = self.model_url(model_dir(self.cache_dir, entry.name))
        turn = _Turn(issued)
        try:
            async with self._control_turn(turn):
                await asyncio.wait_for(
                    self.client.load(entry.name, url, entry.target_model), remaining
                )
        except ModelAlreadyLoaded:
            log.info("container already had %s loaded", entry.target_model)
        except InsufficientMemory as error:
            self.machine.load_rejected_for_memory(entry, error)
            self._dispatch()
            return
        except asyncio.TimeoutError:
            log.warning(
                "loading %s took over %.0f s; unloading it", entry.target_model, self.load_timeout_s
            )
            self.machine.load_timed_out(
                entry, ModelLoadTimeout(entry.target_model, self.load_timeout_s)
            )
            self._dispatch()
            return
        except BaseException as error:
            self.machine.load_failed(entry, error)
            self._dispatch()
            if isinstance(error, asyncio.CancelledError):
                raise
            log.warning("loading %s failed: %s", entry.target_model, error)
            return
        elapsed = turn.took
        self.metrics.model_loading_time.observe(elapsed)
        self._took[entry.target_model] = (downloaded_s, elapsed)
        self.metrics.count_load(self.instance)
        ended_at = time.time()
        self.machine.loaded(entry)
        self._dispatch()
        await self._measure(entry, before)
        if self.control_observer is not None:
            self.control_observer(
                LoadRecord(
                    ended_at,
                    entry.target_model,
                    elapsed,
                    self.instance,
                    measure_s=max(0.0, time.time() - ended_at),
                    memory_bytes=entry.memory_bytes if entry.memory_measured else None,
                    base_bytes=self.machine.base_host,
                )
            )
        log.info(
            "loaded %s in %.2f s (%s MiB)",
            entry.target_model,
            elapsed,
            entry.memory_bytes >> 20 if entry.memory_measured else "?",
        )

    @asynccontextmanager
    async def _control_turn(self, turn: _Turn) -> AsyncIterator[None]:
        """Hold the control lane, if loads and unloads take turns, for one call; `turn` is
        timed as the replay queues it: from when the call could first run (issued, or the
        call before it in the lane ended) to its end, the steps around the call included."""
        lane = self._control_lane
        if lane is None:
            try:
                yield
            finally:
                turn.ended = time.perf_counter()
            return
        async with lane:
            turn.began = max(turn.began, self._lane_free_at)
            try:
                yield
            finally:
                self._lane_free_at = turn.ended = time.perf_counter()

    async def _unload(self, entry: ModelEntry, reason: str, ghost: bool, issued: float) -> None:
        turn = _Turn(issued)
        try:
            async with self._control_turn(turn):
                await self.client.unload(entry.name, entry.target_model)
        except ModelNotFound:
            pass
        except (RuntimeUnavailable, ContainerError) as error:
            # The model server is gone or confused; it no longer serves this model either way.
            log.warning("unload of %s failed: %s", entry.target_model, error)
        except BaseException:
            self._unloaded(entry, ghost)
            raise
        if not ghost:
            elapsed = turn.took
            self.metrics.model_unloading_time.observe(elapsed)
            self.metrics.count_unload(self.instance)
            if self.control_observer is not None:
                record = UnloadRecord(time.time(), entry.target_model, elapsed, self.instance)
                self.control_observer(record)
        self._unloaded(entry, ghost)

    def _unloaded(self, entry: ModelEntry, ghost: bool) -> None:
        self._unloads.pop(entry.target_model, None)
        self.machine.unloaded(entry, ghost)
        self._dispatch()

    # ----- memory ---------------------------------------------------------------------------

    async def _totals(self) -> tuple[int, int | None]:
        host = await run_in(self._probe_pool, self.memory.host)
        gpu = self.memory.gpu
        return host, (await run_in(self._probe_pool, gpu) if gpu is not None else None)

    async def _total_if_quiet(self, entry: ModelEntry) -> tuple[int, int | None] | None:
        """Memory in use before a load, when no other work runs (else no delta is taken)."""
        if not self.machine.quiet_except(entry):
            return None
        try:
            return await self._totals()
        except Exception as error:  # a probe failing must not fail the load
            log.warning("memory probe failed before loading %s: %s", entry.target_model, error)
            return None

    async def _measure(self, entry: ModelEntry, before: tuple[int, int | None] | None) -> None:
        """The model's own memory where the runtime can tell, else the growth of the total,
        trusted only when no other work ran meanwhile; then the base (the server itself)."""
        try:
            own = flying = None
            if self.memory.model is not None:
                own = await run_in(
                    self._probe_pool, functools.partial(self.memory.model, entry.name)
                )
                if own is not None and not self._base_exact:
                    flying = await run_in(
                        self._probe_pool, functools.partial(self._loads_in_flight_memory, entry)
                    )
            host, gpu = await self._totals()
        except Exception as error:
            log.warning("memory probe failed after loading %s: %s", entry.target_model, error)
            self.machine.memory_unknown(entry)
            return
        quiet = self.machine.quiet_except(entry) and entry.state is ModelState.LOADED
        if quiet:
            held = self.machine.host_held - (entry.memory_bytes if entry.holds_memory else 0)
            gpu_held = self.machine.gpu_held - (entry.gpu_bytes if entry.holds_memory else 0)
            grown = own if own is not None else None
            if grown is None and before is not None:
                grown = max(0, host - before[0])
            gpu_grown = None
            if gpu is not None and before is not None and before[1] is not None:
                gpu_grown = max(0, gpu - before[1])
            self.machine.set_base_memory(
                host - held - (grown or 0),
                None if gpu is None else gpu - gpu_held - (gpu_grown or 0),
            )
            if grown is None:
                self.machine.memory_unknown(entry)
            self._base_exact = True
            self.machine.measured(entry, grown, gpu_grown)
        elif own is not None and entry.state is ModelState.LOADED:
            if flying is not None:
                self._raise_base(entry, host - flying, own)
            self.machine.measured(entry, own, None)
        else:
            self.machine.memory_unknown(entry)
        self._dispatch()

    def _loads_in_flight_memory(self, entry: ModelEntry) -> int:
        """What the other loads in flight hold so far, each measured (blocking)."""
        probe = self.memory.model
        assert probe is not None
        names = [
            e.name
            for e in list(self.machine.models.values())
            if e is not entry and e.state is ModelState.LOADING and e.waiting is None
        ]
        return sum(probe(name) or 0 for name in names)

    def _raise_base(self, entry: ModelEntry, host: int, own: int) -> None:
        """Until a quiet load measures the server's own memory, estimate it from a busy one:
        the total (less the loads in flight, each measured) less what every loaded model
        holds. The start-up figure misses what a backend takes at its first load (the
        Python backend: about 200 MiB), and when loads overlap from the start no load is
        quiet, so budgets were passed until the traffic paused."""
        machine = self.machine
        held = machine.host_held - (entry.memory_bytes if entry.holds_memory else 0)
        estimate = host - held - own
        if estimate > machine.base_host:
            machine.set_base_memory(estimate, None)

    # ----- views and recovery -------------------------------------------------------------------

    def _evicted(self, record: Eviction) -> None:
        self.metrics.evictions.labels(reason=record.reason).inc()
        log.info(
            "evicted %s: %s; idle for %.1f s%s",
            record.target_model,
            record.reason,
            record.idle_s,
            "; deleted from disk" if record.deleted_from_disk else "",
        )

    @property
    def evictions(self) -> list[Eviction]:
        return list(self.machine.evictions)

    def disk_bytes(self) -> int:
        return self.machine.disk_used

    def loaded_count(self) -> int:
        return self.machine.loaded_count()

    def _update_gauges(self) -> None:
        machine = self.machine
        self.metrics.set_cache_gauges(
            self.instance,
            machine.loaded_count(),
            machine.disk_used,
            machine.downloads_waiting,
            machine.loads_waiting,
            machine.host_used,
            machine.gpu_used,
        )

    def entries(self) -> list[ModelEntry]:
        """Known models, least recently used first."""
        return list(self.machine)

    def note_stored_etags(self, etags: Mapping[str, str | None]) -> None:
        """Compare what S3 holds now with what was downloaded; flag and count changes.

        As on SageMaker, a changed object is not reloaded: this instance keeps serving the
        bytes it has until the model leaves its disk.
        """
        for target in self.machine.flag_changed(dict(etags)):
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
        self.machine.runtime_down()
        self._dispatch()

    def runtime_up(self) -> None:
        """The model server answers again (empty): requests are served from now on."""
        self.machine.runtime_up()
        self._base_exact = False
        self._spawn(self.measure_base())

    async def measure_base(self) -> None:
        """The model server's own memory, measured while it holds no model, so the memory
        budget counts it from the first load on: when loads overlap from the start there is
        no quiet load to measure it by (quiet loads refine it later)."""
        machine = self.machine
        if machine.loaded_count() or not machine.quiet_except(None):
            return
        try:
            host, gpu = await self._totals()
        except Exception as error:  # a probe failing must not stop the endpoint
            log.warning("memory probe failed while no model was loaded: %s", error)
            return
        if not machine.loaded_count() and machine.quiet_except(None):
            machine.set_base_memory(host, gpu)

    async def settle(self) -> None:
        """Wait until no download, load, unload or deletion is in flight."""
        while work := [task for task in self._work if not task.done()]:
            await asyncio.wait(work)

    async def close(self) -> None:
        """Cancel all work and wait for it, extraction threads included."""
        self._closing = True
        work = list(self._work)
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        for pool in (self._extract_pool, self._probe_pool, self._io_pool):
            pool.shutdown(wait=False, cancel_futures=True)
