"""The live page's memory of the last minutes: a timeline sampled beside the endpoint.

It only watches. Invocations reach it through the service's observer hook (a few counter
increments per request, no I/O, no lock); everything else is read once a period from the
cache's entries and eviction log, the metrics registry and the memory probes, without
changing any of them. The cache has no event hook of its own, so loads and load failures
are seen as changes of each entry's counters between two samples (marked at the sample's
time, at most one period late); evictions carry their own time and reason from the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mme_local.background_task import BackgroundTask
from mme_local.cache.entry import ModelState
from mme_local.cache.manager import ModelCache
from mme_local.cache.records import Eviction
from mme_local.gateway.service import InvocationRecord

log = logging.getLogger(__name__)

OUTCOMES = ("hit", "cold", "not_ready", "error")
"""How a request ended: warm, after a download/load, 429 (still loading), any other error."""

RESTARTS_SAMPLE = "mme_runtime_restarts_total"


def outcome_of(record: InvocationRecord) -> str:
    if record.status == 429:
        return "not_ready"
    if record.status != 200:
        return "error"
    return "hit" if record.cache_hit else "cold"


@dataclass
class ModelCalls:
    """What the cache doesn't count per model: cold starts, 429s, recent warm latencies."""

    cold_starts: int = 0
    not_ready: int = 0
    errors: int = 0
    warm_s: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    _percentiles: tuple[float, float] | None = None

    def add(self, outcome: str, model_s: float) -> None:
        if outcome == "hit":
            self.warm_s.append(model_s)
            self._percentiles = None
        elif outcome == "cold":
            self.cold_starts += 1
        elif outcome == "not_ready":
            self.not_ready += 1
        else:
            self.errors += 1

    def warm_percentiles(self) -> tuple[float, float] | None:
        """(p50, p99) of the last warm answers' model latency, computed once per change."""
        if not self.warm_s:
            return None
        if self._percentiles is None:
            ordered = sorted(self.warm_s)
            last = len(ordered) - 1
            self._percentiles = (ordered[last // 2], ordered[min(last, int(0.99 * len(ordered)))])
        return self._percentiles


@dataclass(frozen=True)
class Sample:
    at: float
    """Epoch seconds at the end of the period."""
    requests: tuple[int, int, int, int]
    """Requests that ended in the period, by OUTCOMES."""
    loaded: int
    loading: int
    host_bytes: int | None
    gpu_bytes: tuple[int, ...] | None
    """Used memory of each GPU, where GPUs are measured."""
    disk_bytes: int


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    """load, load failed, eviction, deleted from disk, runtime down, runtime restart, runtime up."""
    target_model: str | None
    reason: str
    seq: int = 0
    """Numbered from 1 in the order recorded, so a page can ask only for newer ones."""


class LiveRecorder(BackgroundTask):
    """Keeps `keep_s` of samples (one per `period_s`), the last 2,000 marks, the last 100
    runtime events and per-model call counts for at most `max_models` models."""

    def __init__(
        self,
        cache: ModelCache,
        restarts: Callable[[], float],
        runtime_running: Callable[[], bool],
        host_memory: Callable[[], int] | None = None,
        gpu_memory: Callable[[], list[int]] | None = None,
        period_s: float = 1.0,
        keep_s: float = 600.0,
        max_models: int = 10_000,
    ) -> None:
        self.cache = cache
        self.restarts = restarts
        self.runtime_running = runtime_running
        self.host_memory = host_memory
        self.gpu_memory = gpu_memory
        self.period_s = period_s
        self.max_models = max_models
        keep = max(1, int(keep_s / period_s))
        self.samples: deque[Sample] = deque(maxlen=keep)
        self.events: deque[Event] = deque(maxlen=2000)
        self.restart_log: deque[Event] = deque(maxlen=100)
        self.calls: OrderedDict[str, ModelCalls] = OrderedDict()
        self._counts = [0, 0, 0, 0]
        self._seq = 0
        self._seen: dict[str, tuple[int, str | None]] = {}
        self._last_eviction: Eviction | None = None
        self._running = True
        self._restarts_seen = 0.0
        self._host: int | None = None
        self._gpu: tuple[int, ...] | None = None

    # ----- the invoke path: kept to a few dictionary operations --------------------------------

    def observe(self, record: InvocationRecord) -> None:
        outcome = outcome_of(record)
        self._counts[OUTCOMES.index(outcome)] += 1
        # Only names the cache knows (leased, or 429 while loading); not every bad name sent.
        if record.cache_hit is None and outcome != "not_ready":
            return
        calls = self.calls.get(record.target_model)
        if calls is None:
            calls = self.calls[record.target_model] = ModelCalls()
            if len(self.calls) > self.max_models:
                self.calls.popitem(last=False)
        else:
            self.calls.move_to_end(record.target_model)
        calls.add(outcome, record.model_s)

    # ----- sampling ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.measure()
                self.sample(time.time())
            except Exception:
                # The page may go stale; the endpoint must not notice.
                log.exception("live page sampling failed")

    async def measure(self) -> None:
        """Memory, measured in a thread (the probes read /proc or call nvidia-smi)."""
        if self.host_memory is not None:
            self._host = await asyncio.to_thread(self.host_memory)
        if self.gpu_memory is not None:
            self._gpu = tuple(await asyncio.to_thread(self.gpu_memory))

    def sample(self, now: float) -> Sample:
        """Close the period ending `now`: its counts, states and the events seen in it."""
        counts, self._counts = self._counts, [0, 0, 0, 0]
        self._runtime_events(now)
        self._entry_events(now)
        self._eviction_events()
        loaded = loading = 0
        for entry in self.cache.entries():
            if entry.state is ModelState.LOADED:
                loaded += 1
            elif entry.state is ModelState.LOADING:
                loading += 1
        taken = Sample(
            now,
            (counts[0], counts[1], counts[2], counts[3]),
            loaded,
            loading,
            self._host,
            self._gpu,
            self.cache.disk_bytes(),
        )
        self.samples.append(taken)
        return taken

    def _entry_events(self, now: float) -> None:
        seen = self._seen
        for entry in self.cache.entries():
            before = seen.get(entry.target_model)
            now_seen = (entry.loads, entry.last_error)
            if before == now_seen:
                continue
            seen[entry.target_model] = now_seen
            loads_before, error_before = before if before is not None else (0, None)
            if entry.loads > loads_before:
                memory = f"; {entry.memory_bytes >> 20} MiB" if entry.memory_measured else ""
                self._event(now, "load", entry.target_model, f"requested{memory}")
            if entry.last_error is not None and entry.last_error != error_before:
                self._event(now, "load failed", entry.target_model, entry.last_error)
        if len(seen) > 2 * self.max_models:
            known = {entry.target_model for entry in self.cache.entries()}
            self._seen = {name: value for name, value in seen.items() if name in known}

    def _eviction_events(self) -> None:
        records = self.cache.evictions
        fresh: list[Eviction] = []
        for record in reversed(records):
            if record is self._last_eviction:
                break
            fresh.append(record)
        if records:
            self._last_eviction = records[-1]
        for record in reversed(fresh):
            # Only the disk pass deletes without unloading: it frees no memory.
            disk_only = record.deleted_from_disk and not record.freed_memory_bytes
            reason = f"{record.reason}; idle {record.idle_s:.1f} s"
            if record.deleted_from_disk:
                reason += "; deleted from disk"
            kind = "deleted from disk" if disk_only else "eviction"
            self._event(record.at, kind, record.target_model, reason)

    def _runtime_events(self, now: float) -> None:
        running = self.runtime_running()
        restarts = self.restarts()
        if not running and self._running:
            self._restart_event(now, "runtime down", "the model server died; nothing is loaded")
        if restarts > self._restarts_seen:
            attempts = int(restarts - self._restarts_seen)
            self._restart_event(now, "runtime restart", f"{attempts} restart attempt(s)")
        if running and not self._running:
            self._restart_event(now, "runtime up", "the model server answers again")
        self._running, self._restarts_seen = running, restarts

    def _restart_event(self, at: float, kind: str, reason: str) -> None:
        self._seq += 1
        event = Event(at, kind, None, reason, self._seq)
        self.restart_log.append(event)
        self.events.append(event)

    def _event(self, at: float, kind: str, target: str | None, reason: str) -> None:
        self._seq += 1
        self.events.append(Event(at, kind, target, reason, self._seq))

    @property
    def last_seq(self) -> int:
        return self._seq
