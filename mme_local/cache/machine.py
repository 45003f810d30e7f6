"""The model cache's state machine: every decision, no I/O, no `await`, no clock of its own.

The live cache (`cache.manager`) and the capacity simulator (`capacity.instance`) both drive
this one class: they feed it events (a request arrives or ends, some work finished or failed)
and carry out the commands it queues in `outbox` (probe, download, load, unload, delete,
answer a waiting request). Because each event is handled in one synchronous step, every
budget check and the act it licenses happen together, and disk and memory are reserved when
the work is licensed: concurrent work cannot overshoot a budget.

States of one TargetModel (`ModelEntry.state`; `waiting` says what a transition is queued for):

=============  ===========================  ==============================================
state          event                        next (commands issued)
=============  ===========================  ==============================================
REMOTE         request                      DOWNLOADING: Probe (disk budget, size unknown),
                                            else wait for DISK_ROOM / DOWNLOAD_SLOT
DOWNLOADING    probed                       wait for DISK_ROOM (deleting idle models on
                                            disk; unloading idle loaded ones when no load
                                            is queued)
DOWNLOADING    room reserved                wait for DOWNLOAD_SLOT, then Download
DOWNLOADING    downloaded                   ON_DISK, then at once a load (as LOADING)
DOWNLOADING    outgrew its reservation      DOWNLOADING again with a reservation of the
                                            whole allowance (once), else REMOTE + errors
DOWNLOADING    probe/download failed        REMOTE; every waiter gets the error
ON_DISK        request                      LOADING (count budget: the LRU idle model's
                                            Unload starts beside it), wait for LOAD_SLOT
LOADING        slot taken                   wait for MEMORY (unloading LRU idle models)
LOADING        memory fits                  memory reserved; Load
LOADING        loaded                       LOADED; every waiter is answered ready
LOADING        load failed (507)            an idle model's Unload, then Load once more
LOADING        load failed / timed out      ON_DISK (timed out: UNLOADING, a ghost Unload);
                                            every waiter gets the error
LOADED         request                      LOADED (a cache hit)
LOADED         measured over a budget       Unload of LRU idle models until it fits
LOADED         idle, cache disabled         UNLOADING, then deleted (REMOTE)
LOADED         container lost it            ON_DISK
UNLOADING      unloaded                     ON_DISK (or REMOTE when reclaimed for disk);
                                            a new load if requests arrived meanwhile
ON_DISK        idle and disk room needed    REMOTE: Delete
=============  ===========================  ==============================================

Victims are chosen by the stateless `EvictionPolicy`: least recently used among idle (unpinned,
settled) models. A request pins its model from arrival to `done`/`abandon`; a pinned model is
never unloaded or deleted. Memory in use is the measured base plus what each model holding
memory measured on its last load (0 until first measured); an unloading model holds its memory
until its unload ends.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mme_local.cache.entry import ModelEntry, ModelState, Waiting
from mme_local.cache.policy import GPU_SHORT, HOST_SHORT, Budgets, EvictionPolicy
from mme_local.cache.records import DiskFull, Eviction

log = logging.getLogger(__name__)

REMOTE, DOWNLOADING, ON_DISK = ModelState.REMOTE, ModelState.DOWNLOADING, ModelState.ON_DISK
LOADING, LOADED, UNLOADING = ModelState.LOADING, ModelState.LOADED, ModelState.UNLOADING

# An archive's first reservation: its size in S3 plus a quarter and 1 MiB (model weights hardly
# compress). One that expands further is downloaded again with the whole allowance reserved.
_SLACK_FRACTION = 4
_SLACK_BYTES = 1 << 20
# Stale numbers the deletable models' heap may hold beyond the live ones before it is
# compacted (`_Settled._compact`).
_COMPACT_SLACK = 64


# ----- commands: what the executor is asked to do ------------------------------------------
# Values that no one changes once issued, yet not frozen: a frozen dataclass's `__init__`
# costs about three times a plain one's, and a simulation issues millions of commands.


@dataclass(slots=True)
class Probe:
    """Ask S3 for the archive's size (sizes the disk reservation)."""

    entry: ModelEntry


@dataclass(slots=True)
class Download:
    entry: ModelEntry
    reserved: int | None
    """The most disk the extraction may use (None: no disk budget)."""


@dataclass(slots=True)
class Load:
    entry: ModelEntry


@dataclass(slots=True)
class Unload:
    entry: ModelEntry
    reason: str
    ghost: bool = False
    """Dropping a load that timed out (not an eviction)."""


@dataclass(slots=True)
class Delete:
    """Remove the model's folder; the accounting already says it is gone."""

    entry: ModelEntry


@dataclass(slots=True)
class Answer:
    """A waiting request's answer: ready (error None) or the error of the work it waited on."""

    entry: ModelEntry
    request: int
    error: BaseException | None


@dataclass(slots=True)
class Evicted:
    record: Eviction


Command = Probe | Download | Load | Unload | Delete | Answer | Evicted


class _Slots:
    """At most `limit` holders (None: no limit); the rest queue, first come first served."""

    def __init__(self, limit: int | None) -> None:
        self.free = limit
        self.queue: deque[ModelEntry] = deque()

    def take(self, entry: ModelEntry) -> bool:
        if self.free is None:
            return True
        if self.free == 0:
            self.queue.append(entry)
            return False
        self.free -= 1
        return True

    def give_back(self) -> ModelEntry | None:
        """The next in the queue, which takes over the slot; None if no one waits."""
        if self.free is None:
            return None
        if self.queue:
            return self.queue.popleft()
        self.free += 1
        return None


class _Settled:
    """Models with their files on disk and no download in flight, least recently used first,
    with the deletable ones (on disk only, idle) reachable without walking the busy ones.

    Each model carries the sequence number of its last use; deletable models wait in a heap
    by that number. Heap items go stale when a model is used or gets busy, and are dropped
    when they come up, so the disk pass costs what it deletes, not the models it skips (with
    thousands of downloaded models queued for a load slot it used to walk them all). The
    heap holds the bare numbers (each is one model's, never reused), which compare faster
    than tuples would; `_queued` finds the model.
    """

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}
        self._heap: list[int] = []
        self._queued: dict[int, ModelEntry] = {}
        """Sequence number in the heap -> its model."""
        self._counter = 0

    def __contains__(self, name: str) -> bool:
        return name in self._seq

    def __setitem__(self, name: str, entry: ModelEntry) -> None:
        self.move_to_end(name)
        self.offer(entry)

    def move_to_end(self, name: str) -> None:
        self._counter += 1
        self._seq[name] = self._counter

    def touch(self, name: str) -> None:
        """A use: to the end of the order if the model is settled (else nothing)."""
        seq = self._seq
        if name in seq:
            self._counter += 1
            seq[name] = self._counter

    def pop(self, name: str, default: None = None) -> None:
        self._seq.pop(name, None)

    def offer(self, entry: ModelEntry) -> None:
        """The model may have become deletable: queue it at its place in the order."""
        seq = self._seq.get(entry.target_model)
        if seq is None or not entry.deletable or seq in self._queued:
            return
        self._queued[seq] = entry
        heap = self._heap
        heapq.heappush(heap, seq)
        if len(heap) > 2 * len(self._seq) + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        """Drop the numbers of models used since they were queued, once they are at least
        half the heap: a disk pass would pop them one by one only to skip them (a model that
        is loaded and unloaded over and over leaves one behind each time). Pops come in
        number order whatever the heap's layout, so the passes find what they found."""
        current, queued = self._seq, self._queued
        live = [seq for seq in self._heap if current.get(queued[seq].target_model) == seq]
        kept = {seq: queued[seq] for seq in live}
        heapq.heapify(live)
        # In place: a disk pass's generator holds both.
        self._heap[:] = live
        queued.clear()
        queued.update(kept)

    def deletable(self, taken: list[ModelEntry]) -> Iterator[ModelEntry]:
        """Deletable models, least recently used first; each one yielded is appended to
        `taken` and must be offered again if it is not deleted."""
        heap, queued, current = self._heap, self._queued, self._seq
        while heap:
            seq = heapq.heappop(heap)
            entry = queued.pop(seq)
            if current.get(entry.target_model) != seq or not entry.deletable:
                continue
            taken.append(entry)
            yield entry

    def give_back(self, taken: list[ModelEntry]) -> None:
        for entry in taken:
            self.offer(entry)


class CacheMachine:
    """The cache's decisions for one instance. Not thread-safe: one caller at a time."""

    # Slots: CPython 3.11 keeps an instance's attributes in a compact table only up to 30 of
    # them; past that they go to a plain dict, whose every attribute read and method call
    # (hundreds per simulated request) is a lookup by name. Slots are read by offset.
    __slots__ = (
        "_after_unload",
        "_downloads",
        "_loaded",
        "_loads",
        "_maybe_over",
        "_memory_queue",
        "_memory_wait",
        "_one_clock",
        "_outgrown",
        "_room_queue",
        "_room_short",
        "_settled",
        "_unload_reasons",
        "_wanted_reserve",
        "base_gpu",
        "base_host",
        "budgets",
        "cache_enabled",
        "clock",
        "deletions",
        "disk_reclaiming",
        "disk_reserved",
        "disk_used",
        "downloads",
        "evictions",
        "forgotten",
        "gpu_held",
        "gpu_leaving",
        "hits",
        "host_held",
        "host_leaving",
        "loads",
        "models",
        "name_of",
        "occupying",
        "outbox",
        "over_budget_loads",
        "policy",
        "record_evictions",
        "runtime_running",
        "unloads",
        "wall_clock",
    )

    def __init__(
        self,
        budgets: Budgets,
        *,
        cache_enabled: bool = True,
        max_parallel_downloads: int | None = None,
        max_parallel_loads: int | None = None,
        clock: Callable[[], float] = lambda: 0.0,
        wall_clock: Callable[[], float] | None = None,
        name_of: Callable[[str], str] = str,
        track_gpu: bool = False,
        keep_evictions: int = 1000,
        record_evictions: bool = True,
    ) -> None:
        self.budgets = budgets
        self.policy = EvictionPolicy(budgets)
        self.cache_enabled = cache_enabled
        self.clock = clock
        self.wall_clock = wall_clock or clock
        self._one_clock = wall_clock is None
        self.name_of = name_of
        self.outbox: list[Command] = []
        self.models: dict[str, ModelEntry] = {}
        # Least recently used first. `_loaded`: models in LOADED; `_settled`: every model with
        # its files on disk and no download in flight (the disk pass skips busy ones).
        self._loaded: OrderedDict[str, ModelEntry] = OrderedDict()
        self._settled = _Settled()
        self._downloads = _Slots(max_parallel_downloads)
        self._loads = _Slots(max_parallel_loads)
        self._room_queue: deque[ModelEntry] = deque()
        self._memory_queue: deque[ModelEntry] = deque()
        self._memory_wait: tuple[object, ...] | None = None
        """`_memory_key()` when the head of the memory queue last waited for unloads."""
        self._after_unload: dict[str, ModelEntry] = {}
        """Victim name -> the load that answered 507 and retries once the victim is out."""
        self._wanted_reserve: dict[str, int] = {}
        self._outgrown: set[str] = set()
        self._unload_reasons: dict[str, tuple[str, float]] = {}
        self._room_short: int | None = None
        """Bytes the first queued download still lacked at its last try (None: try again)."""
        self._maybe_over = True
        """False only while the memory in use, less what unloads in flight free, is known to
        fit the budgets (`_enforce_memory` found it so, and nothing added to it since beyond
        what a load's licence checked): a request's end or a measurement then has nothing
        to enforce. What may add more sets it: a load over a budget or not measured this
        time, a grown measurement, the base. Unloads and freed memory only take away."""
        self.occupying = 0
        """Models loaded or loading (what `max_loaded_models` bounds)."""
        self.disk_used = 0
        self.disk_reserved = 0
        self.disk_reclaiming = 0
        """Bytes of models being unloaded to be deleted for disk room."""
        self.base_host = 0
        self.base_gpu: int | None = 0 if track_gpu else None
        self.host_held = 0
        self.gpu_held = 0
        self.host_leaving = 0
        self.gpu_leaving = 0
        self.evictions: deque[Eviction] = deque(maxlen=keep_evictions)
        self.record_evictions = record_evictions
        """Make a record of each eviction (kept in `evictions` and issued as `Evicted`). The
        capacity simulator makes none: it learns of evictions from its own events, and the
        records (two objects and a clock reading each) took about 5% of its time."""
        self.over_budget_loads = 0
        self.forgotten = 0
        """Requests for models that never reached the disk (unknown names, failures)."""
        self.hits = 0
        self.loads = self.unloads = self.downloads = self.deletions = 0
        self.runtime_running = True

    # ----- views ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ModelEntry]:
        """Known models, least recently used first."""
        return iter(sorted(self.models.values(), key=lambda e: e.last_used))

    @property
    def host_used(self) -> int:
        return self.base_host + self.host_held

    @property
    def gpu_used(self) -> int | None:
        return None if self.base_gpu is None else self.base_gpu + self.gpu_held

    def loaded_count(self) -> int:
        return len(self._loaded)

    @property
    def memory_staying(self) -> int:
        """Host plus GPU memory of the models that stay (loaded or loading; not those being
        unloaded): what routing over several instances compares (`mme_local.routing`)."""
        return self.host_held - self.host_leaving + self.gpu_held - self.gpu_leaving

    @property
    def downloads_waiting(self) -> int:
        """Downloads queued for a download slot or for disk room."""
        return len(self._downloads.queue) + len(self._room_queue)

    @property
    def loads_waiting(self) -> int:
        """Loads queued for a load slot or for memory."""
        return len(self._loads.queue) + len(self._memory_queue)

    def in_transition(self) -> list[ModelEntry]:
        return [e for e in self.models.values() if e.busy]

    def quiet_except(self, entry: ModelEntry | None) -> bool:
        """No other model is being loaded or unloaded (the model server's memory then changes
        for this model alone; downloads don't touch it)."""
        return not any(
            e is not entry and (e.state is UNLOADING or (e.state is LOADING and e.waiting is None))
            for e in self.models.values()
        )

    # ----- requests ---------------------------------------------------------------------------

    def request(self, request: int, target_model: str) -> ModelEntry:
        """A request arrives: pinned until `done` (or `abandon`). The model is served now
        when it is LOADED (`entry.state`), else the request waits for an Answer."""
        entry = self.models.get(target_model)
        if entry is None:
            entry = self.models[target_model] = ModelEntry(target_model, self.name_of(target_model))
        entry.pins += 1
        state = entry.state
        if state is LOADED:
            self.hits += 1
            self._use(entry)
            return entry
        entry.waiters.append(request)
        if state is REMOTE:
            self._start_download(entry)
        elif state is ON_DISK:
            self._start_load(entry)
        return entry

    def done(self, entry: ModelEntry) -> None:
        """A request that was served (or answered with an error) has ended."""
        entry.pins -= 1
        if entry.pins == 0:
            self._idle(entry)

    def abandon(self, request: int, entry: ModelEntry) -> bool:
        """A waiting request gave up (ready timeout); the work goes on. False if it was
        answered already."""
        waiters = entry.waiters
        # Tested first, not `remove`'s ValueError caught: most deadlines find the request
        # answered already, and raising costs more than the scan of a short list.
        if request not in waiters:
            return False
        waiters.remove(request)
        self.done(entry)
        return True

    def _use(self, entry: ModelEntry) -> None:
        entry.invocations += 1
        entry.last_used = now = self.clock()
        # The simulator has one clock: read it once (this runs for every request).
        entry.last_used_wall = now if self._one_clock else self.wall_clock()
        name = entry.target_model
        if name in self._loaded:
            self._loaded.move_to_end(name)
        self._settled.touch(name)

    # ----- downloads --------------------------------------------------------------------------

    def _start_download(self, entry: ModelEntry) -> None:
        entry.state = DOWNLOADING
        entry.last_error = None
        if self.budgets.disk_bytes is None:
            self._want_download_slot(entry, None)
        elif entry.size_hint is None:
            entry.waiting = None
            self.outbox.append(Probe(entry))
        else:
            self._want_room(entry, self._first_reservation(entry, entry.size_hint))

    def probed(self, entry: ModelEntry, size: int) -> None:
        entry.size_hint = size
        self._want_room(entry, self._first_reservation(entry, size))

    def _allowance(self) -> int:
        budget = self.budgets.disk_bytes
        cap = self.budgets.max_archive_bytes
        return cap if budget is None else min(cap, budget)

    def _first_reservation(self, entry: ModelEntry, size: int) -> int:
        guess = size + size // _SLACK_FRACTION + _SLACK_BYTES
        return min(self._allowance(), guess)

    def _want_room(self, entry: ModelEntry, reserve: int) -> None:
        budget = self.budgets.disk_bytes
        assert budget is not None
        if (entry.size_hint or 0) > budget:
            self._download_failed(
                entry,
                DiskFull(
                    f"the archive of {entry.target_model} ({entry.size_hint} bytes) is larger "
                    f"than the whole disk budget ({budget} bytes)"
                ),
            )
            return
        entry.waiting = Waiting.DISK_ROOM
        self._wanted_reserve[entry.target_model] = reserve
        self._room_queue.append(entry)
        self._grant_room()

    def _grant_room(self) -> None:
        """Reserve disk for queued downloads in order. Room comes from idle models on disk
        (deleted), then from idle loaded ones (unloaded, then deleted), and only when that
        makes enough room: nothing is evicted for room that still would not suffice."""
        budget = self.budgets.disk_bytes
        queue = self._room_queue
        self._room_short = None
        while queue and budget is not None:
            entry = queue[0]
            need = self._wanted_reserve[entry.target_model]
            short = self.disk_used + self.disk_reserved + need - budget
            if short > 0:
                taken: list[ModelEntry] = []
                order = self._settled.deletable(taken)
                on_disk = list(self.policy.disk_victims(order, budget + short))
                freed = sum(victim.disk_bytes for victim in on_disk)
                coming = self.disk_reclaiming
                loaded: list[ModelEntry] = []
                # Not while loads are queued: those models could not be loaded soon anyway,
                # and hot models would make way for them.
                if freed + coming < short and not (self._loads.queue or self._memory_queue):
                    for victim in self.policy.victims(self._loaded.values()):
                        loaded.append(victim)
                        coming += victim.disk_bytes
                        if freed + coming >= short:
                            break
                if freed + coming < short:
                    self._settled.give_back(taken)
                    self._room_short = short - freed - coming
                    return
                for victim in on_disk:
                    self._delete(victim, "disk budget")
                self._settled.give_back(taken)
                for victim in loaded:
                    self._unload(victim, "disk budget", reclaim=True)
                if freed < short:
                    return  # the unloads in flight bring the rest
            queue.popleft()
            del self._wanted_reserve[entry.target_model]
            entry.disk_reserved = need
            self.disk_reserved += need
            self._want_download_slot(entry, need)

    def _want_download_slot(self, entry: ModelEntry, reserved: int | None) -> None:
        entry.waiting = Waiting.DOWNLOAD_SLOT
        if self._downloads.take(entry):
            entry.waiting = None
            self.outbox.append(Download(entry, reserved))

    def _download_slot_freed(self) -> None:
        following = self._downloads.give_back()
        if following is not None:
            following.waiting = None
            self.outbox.append(Download(following, following.disk_reserved or None))

    def _release_reservation(self, entry: ModelEntry) -> None:
        self.disk_reserved -= entry.disk_reserved
        entry.disk_reserved = 0

    def downloaded(self, entry: ModelEntry, size: int, etag: str | None) -> None:
        self._download_slot_freed()
        self._release_reservation(entry)
        self._outgrown.discard(entry.target_model)
        entry.disk_bytes = size
        self.disk_used += size
        entry.etag = etag
        entry.artifact_changed = False
        entry.downloads += 1
        self.downloads += 1
        entry.state = ON_DISK
        entry.waiting = None
        self._settled[entry.target_model] = entry
        # The work carries on to a load even if every request gave up meanwhile; it is
        # loading (so never a disk victim) before queued downloads look for room.
        self._start_load(entry)
        self._grant_room()

    def download_failed(self, entry: ModelEntry, error: BaseException, outgrew: bool) -> None:
        """The download ended without a model; `outgrew`: it needed more than reserved."""
        self._download_slot_freed()
        reserved = entry.disk_reserved
        self._release_reservation(entry)
        if outgrew and reserved < self._allowance() and entry.target_model not in self._outgrown:
            self._outgrown.add(entry.target_model)
            self._want_room(entry, self._allowance())
        else:
            budget = self.budgets.disk_bytes
            if outgrew and budget is not None and budget <= self.budgets.max_archive_bytes:
                error = DiskFull(
                    f"{entry.target_model} does not fit in the disk budget: it expands to more "
                    f"than the whole budget of {budget} bytes"
                )
            self._outgrown.discard(entry.target_model)
            self._download_failed(entry, error)
        self._grant_room()

    def probe_failed(self, entry: ModelEntry, error: BaseException) -> None:
        self._download_failed(entry, error)

    def _download_failed(self, entry: ModelEntry, error: BaseException) -> None:
        entry.state = REMOTE
        entry.waiting = None
        self._fail_waiters(entry, error)
        self._idle(entry)

    # ----- loads ------------------------------------------------------------------------------

    def _start_load(self, entry: ModelEntry) -> None:
        """ON_DISK -> LOADING: the count budget is checked and acted on in this step."""
        while reason := self.policy.count_full(self.occupying):
            victim = self.policy.victim(self._loaded.values(), entry)
            if victim is None:
                self.over_budget_loads += 1
                log.warning(
                    "%s loads over %s: every loaded model is in use", entry.target_model, reason
                )
                break
            self._unload(victim, reason)
        entry.state = LOADING
        self.occupying += 1
        self._want_load_slot(entry)

    def _want_memory(self, entry: ModelEntry) -> None:
        """Memory is reserved at the load call (a load queued for a slot holds none)."""
        entry.waiting = Waiting.MEMORY
        self._memory_queue.append(entry)
        self._grant_memory()

    def _memory_short(self, adding: int, adding_gpu: int, leaving: bool) -> str | None:
        """`policy.memory_short` of the memory in use plus a load's (`leaving`: less what
        unloads in flight free). Spelled out, `host_used` and `gpu_used` too: this runs
        several times per load and per request."""
        budgets = self.budgets
        limit = budgets.host_memory_bytes
        if limit is not None:
            host = self.base_host + self.host_held + adding
            if leaving:
                host -= self.host_leaving
            if host > limit:
                return HOST_SHORT
        limit = budgets.gpu_memory_bytes
        gpu = self.base_gpu
        if limit is not None and gpu is not None:
            gpu += self.gpu_held + adding_gpu
            if leaving:
                gpu -= self.gpu_leaving
            if gpu > limit:
                return GPU_SHORT
        return None

    def _grant_memory(self) -> None:
        """Reserve memory for queued loads in order, unloading idle models to make room."""
        queue = self._memory_queue
        while queue:
            entry = queue[0]
            host = entry.memory_bytes if entry.memory_measured else 0
            gpu = entry.gpu_bytes
            reason = self._memory_short(host, gpu, leaving=False)
            if reason is not None:
                # Unload idle models until what is leaving makes room. An unload leaves
                # `reason` as it is: the model holds its memory until the unload ends.
                while self._memory_short(host, gpu, leaving=True) is not None:
                    victim = self.policy.victim(self._loaded.values(), entry)
                    if victim is None:
                        self.over_budget_loads += 1
                        log.warning(
                            "%s loads over the %s: every model is in use",
                            entry.target_model,
                            reason,
                        )
                        break
                    self._unload(victim, reason)
                else:
                    # Unloads in flight free enough: wait for them. Until the memory figures
                    # or the head change, another try would end here again.
                    self._memory_wait = self._memory_key()
                    return
            queue.popleft()
            self._hold_memory(entry)
            if reason is not None or host != entry.memory_bytes:
                # Over a budget, or holding more than was checked (not measured this time).
                self._maybe_over = True
            entry.waiting = None
            self.outbox.append(Load(entry))

    def _memory_key(self) -> tuple[object, ...]:
        """What `_grant_memory`'s wait for unloads in flight depends on."""
        head = self._memory_queue[0] if self._memory_queue else None
        return (
            head,
            self.base_host,
            self.base_gpu,
            self.host_held,
            self.gpu_held,
            self.host_leaving,
            self.gpu_leaving,
        )

    def _hold_memory(self, entry: ModelEntry) -> None:
        if not entry.holds_memory:
            entry.holds_memory = True
            self.host_held += entry.memory_bytes
            self.gpu_held += entry.gpu_bytes

    def _free_memory(self, entry: ModelEntry) -> None:
        if entry.holds_memory:
            entry.holds_memory = False
            self.host_held -= entry.memory_bytes
            self.gpu_held -= entry.gpu_bytes

    def _want_load_slot(self, entry: ModelEntry) -> None:
        entry.waiting = Waiting.LOAD_SLOT
        if self._loads.take(entry):
            self._want_memory(entry)

    def _load_slot_freed(self) -> None:
        following = self._loads.give_back()
        if following is not None:
            self._want_memory(following)

    def loaded(self, entry: ModelEntry) -> None:
        self._load_slot_freed()
        entry.retry_after_unload = False
        entry.state = LOADED
        entry.waiting = None
        entry.loads += 1
        self.loads += 1
        entry.last_error = None
        entry.loaded_at = self.clock()
        self._loaded[entry.target_model] = entry
        self._settled.move_to_end(entry.target_model)
        waiters, entry.waiters = entry.waiters, []
        for request in waiters:
            self._use(entry)
            self.outbox.append(Answer(entry, request, None))
        if self._room_queue and not self._loads.queue:
            self._grant_room()
        self._idle(entry)

    def measured(self, entry: ModelEntry, host: int | None, gpu: int | None = None) -> None:
        """What the model holds, measured after its load; over a budget, idle models go."""
        old_host, old_gpu = entry.memory_bytes, entry.gpu_bytes
        if host is not None:
            entry.memory_bytes, entry.memory_measured = host, True
        if gpu is not None:
            entry.gpu_bytes = gpu
        if entry.holds_memory:
            grown_host, grown_gpu = entry.memory_bytes - old_host, entry.gpu_bytes - old_gpu
            self.host_held += grown_host
            self.gpu_held += grown_gpu
            if entry.state is UNLOADING:
                self.host_leaving += grown_host
                self.gpu_leaving += grown_gpu
            if grown_host > 0 or grown_gpu > 0:
                self._maybe_over = True
        if self._maybe_over:
            self._enforce_memory(entry)

    def memory_unknown(self, entry: ModelEntry) -> None:
        """The load's memory could not be told apart from other work's."""
        entry.memory_measured = False

    def set_base_memory(self, host: int, gpu: int | None) -> None:
        """The model server's own memory (total measured less what models hold)."""
        self.base_host = max(0, host)
        if self.base_gpu is not None and gpu is not None:
            self.base_gpu = max(0, gpu)
        self._maybe_over = True

    def _enforce_count(self) -> None:
        while reason := self.policy.count_full(self.occupying - 1):
            victim = self.policy.victim(self._loaded.values())
            if victim is None:
                return
            self._unload(victim, reason)

    def _enforce_memory(self, keep: ModelEntry | None) -> None:
        while reason := self._memory_short(0, 0, leaving=True):
            victim = self.policy.victim(self._loaded.values(), keep)
            if victim is None:
                log.warning("over the %s and every other model is in use", reason)
                self._maybe_over = True
                return
            self._unload(victim, reason)
        self._maybe_over = False

    def load_failed(self, entry: ModelEntry, error: BaseException) -> None:
        self._load_slot_failed(entry)
        entry.state = ON_DISK
        entry.last_error = str(error)
        self._fail_waiters(entry, error)
        self._idle(entry)

    def load_rejected_for_memory(self, entry: ModelEntry, error: BaseException) -> None:
        """The container answered 507: unload one idle model, then load once more."""
        victim = (
            None if entry.retry_after_unload else self.policy.victim(self._loaded.values(), entry)
        )
        if victim is None:
            entry.retry_after_unload = False
            self.load_failed(entry, error)
            return
        entry.retry_after_unload = True
        entry.waiting = Waiting.MEMORY
        self._after_unload[victim.target_model] = entry
        self._unload(victim, "container answered 507 on load")
        # Only now: the load that takes over the slot may pick victims too, not this one.
        self._load_slot_freed()

    def load_timed_out(self, entry: ModelEntry, error: BaseException) -> None:
        """The container may still be loading it: unload the ghost (not an eviction)."""
        self._load_slot_freed()
        self.occupying -= 1
        entry.retry_after_unload = False
        entry.state = UNLOADING
        entry.waiting = None
        entry.last_error = str(error)
        self._fail_waiters(entry, error)
        self.host_leaving += entry.memory_bytes if entry.holds_memory else 0
        self.gpu_leaving += entry.gpu_bytes if entry.holds_memory else 0
        self.outbox.append(Unload(entry, "load timed out", ghost=True))

    def _load_slot_failed(self, entry: ModelEntry) -> None:
        self._load_slot_freed()
        self.occupying -= 1
        entry.retry_after_unload = False
        self._free_memory(entry)
        entry.waiting = None
        self._grant_memory()

    # ----- unloads and deletions -------------------------------------------------------------

    def _unload(self, victim: ModelEntry, reason: str, reclaim: bool = False) -> None:
        victim.state = UNLOADING
        self.occupying -= 1
        del self._loaded[victim.target_model]
        if victim.holds_memory:
            self.host_leaving += victim.memory_bytes
            self.gpu_leaving += victim.gpu_bytes
        victim.reclaim = reclaim
        if reclaim:
            self.disk_reclaiming += victim.disk_bytes
        self.outbox.append(Unload(victim, reason))
        if self.record_evictions:
            self._unload_reasons[victim.target_model] = (reason, self.clock() - victim.last_used)

    def unloaded(self, entry: ModelEntry, ghost: bool = False) -> None:
        reason, idle_s = self._unload_reasons.pop(entry.target_model, ("", 0.0))
        if entry.holds_memory:
            self.host_leaving -= entry.memory_bytes
            self.gpu_leaving -= entry.gpu_bytes
        freed = entry.memory_bytes
        self._free_memory(entry)
        entry.state = ON_DISK
        if not ghost:
            entry.unloads += 1
            self.unloads += 1
        reclaim, entry.reclaim = entry.reclaim, False
        if reclaim:
            self.disk_reclaiming -= entry.disk_bytes
        if not ghost and self.record_evictions:
            self._record(entry, reason, idle_s, freed, deleted=reclaim)
        if reclaim:
            self._delete(entry, None)
        retry = self._after_unload.pop(entry.target_model, None)
        if retry is not None and retry.state is LOADING:
            self._want_load_slot(retry)
        if entry.waiters:
            if entry.state is REMOTE:
                self._start_download(entry)
            else:
                self._start_load(entry)
        # Only with work queued (a call per unload saved; an empty room queue's
        # `_room_short` is never read before `_want_room` resets it).
        if self._memory_queue:
            self._grant_memory()
        if self._room_queue:
            self._grant_room()
        self._idle(entry)

    def _delete(self, entry: ModelEntry, reason: str | None) -> None:
        """Off the disk at once in the accounting; the executor removes the files."""
        self.disk_used -= entry.disk_bytes
        entry.disk_bytes = 0
        entry.state = REMOTE
        self._settled.pop(entry.target_model, None)
        self.deletions += 1
        self.outbox.append(Delete(entry))
        if reason is not None and self.record_evictions:
            self._record(entry, reason, self.clock() - entry.last_used, 0, deleted=True)

    def _record(
        self, entry: ModelEntry, reason: str, idle_s: float, freed: int, deleted: bool
    ) -> None:
        record = Eviction(entry.target_model, reason, idle_s, self.wall_clock(), freed, deleted)
        self.evictions.append(record)
        self.outbox.append(Evicted(record))

    # ----- the rest ---------------------------------------------------------------------------

    def _fail_waiters(self, entry: ModelEntry, error: BaseException) -> None:
        entry.last_error = str(error)
        waiters, entry.waiters = entry.waiters, []
        for request in waiters:
            self.outbox.append(Answer(entry, request, error))

    def _idle(self, entry: ModelEntry) -> None:
        """A request or some work on the model ended: apply what waited for a quiet model,
        and let queued work that waited for room try again if this may be enough."""
        if entry.pins:
            return
        state = entry.state
        if not self.cache_enabled:
            if state is LOADED:
                self._unload(entry, "model cache disabled", reclaim=True)
            elif state is ON_DISK:
                self._delete(entry, "model cache disabled")
                if self._room_queue:
                    self._grant_room()
        state = entry.state
        if state is ON_DISK:
            self._settled.offer(entry)
        elif state is REMOTE and entry.downloads == 0:
            self.models.pop(entry.target_model, None)
            self.forgotten += 1
            return
        if state is LOADED:
            if self._memory_queue and self._memory_wait != self._memory_key():
                self._grant_memory()
            # A load over a budget while every model was in use: the models it could not
            # displace then go as soon as they are idle. (Without a count budget there is
            # no count to check: this runs at the end of every request.)
            if self.budgets.max_loaded_models is not None:
                self._enforce_count()
            if self._maybe_over:
                self._enforce_memory(entry)
        if (state is LOADED or state is ON_DISK) and self._room_queue:
            if self._room_short is not None:
                self._room_short -= entry.disk_bytes
            if self._room_short is None or self._room_short <= 0:
                self._grant_room()

    def make_room(self, keep: ModelEntry, reason: str) -> ModelEntry | None:
        """Unload one idle model other than `keep` (e.g. after a 507 on invoke)."""
        victim = self.policy.victim(self._loaded.values(), keep)
        if victim is not None:
            self._unload(victim, reason)
        return victim

    def container_lost(self, entry: ModelEntry) -> None:
        """The container no longer has this model (unloaded behind the cache's back)."""
        if entry.state is LOADED:
            self._drop_loaded(entry)

    def runtime_down(self) -> None:
        """The model server died: nothing is loaded any more; work in flight fails by itself."""
        self.runtime_running = False
        for entry in list(self._loaded.values()):
            self._drop_loaded(entry)

    def runtime_up(self) -> None:
        self.runtime_running = True

    def _drop_loaded(self, entry: ModelEntry) -> None:
        del self._loaded[entry.target_model]
        self.occupying -= 1
        self._free_memory(entry)
        entry.state = ON_DISK
        self._settled.offer(entry)
        self._grant_memory()

    def flag_changed(self, etags: dict[str, str | None]) -> list[str]:
        """Flag the models whose S3 object no longer has the ETag they were downloaded with;
        returns the ones flagged just now."""
        flagged = []
        for target, etag in etags.items():
            entry = self.models.get(target)
            if entry is None or entry.etag is None or entry.state is REMOTE:
                continue
            if etag != entry.etag and not entry.artifact_changed:
                entry.artifact_changed = True
                flagged.append(target)
        return flagged
