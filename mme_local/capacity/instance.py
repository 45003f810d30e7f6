"""One simulated instance: the live cache's own state machine on a virtual clock.

The decisions are `cache.machine.CacheMachine`'s, the very class the emulator runs; this
module only plays the executor's part with measured costs instead of I/O: a download ends
`download_s` later with the model's extracted size, a load `load_s` later and then reports the
model's memory, an unload `unload_s` later. A request that waits longer than the ready timeout
is answered 429 (the work goes on), and a request holds its model for its service time.

For instance candidates it also plays the cloud's model server: a load that doesn't fit what
the instance really holds fails with a 507 (`out_of_memory`), a loaded model serves as many
requests at once as it has instances and queues the rest (`queueing`), and requests wait for
loads and unloads as Triton's SageMaker front end makes them (`front_end.py`).

When replaying a recorded run, the download and load started for a request that was a cold
start in the recording take the times recorded for them, not the profile's; the queueing
before them is simulated. With `serial_model_control` loads and unloads take turns in one
lane, in the order they were started, as the emulator sends them to Triton. A load, unload or
request whose reckoned end lands within `SNAP_S` of its recorded end (the same model's same
call; the same request) ends then instead: Triton answers the requests it held behind a call
within a millisecond of the call itself, and only the recorded ends keep that order.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import (
    Answer,
    CacheMachine,
    Command,
    Delete,
    Download,
    Load,
    Probe,
    Unload,
)
from mme_local.cache.records import LoadRecord, UnloadRecord
from mme_local.capacity.workload import Workload

if TYPE_CHECKING:
    from mme_local.capacity.simulator import ModelCosts, SimConfig

# How a request was answered (a cache hit whose model could not answer in time counts as a
# hit and as an error, as CloudWatch's ModelCacheHit and 5XX metrics would).
HIT, COLD, NOT_READY, ERROR, HIT_TIMED_OUT = range(5)
# Called once per request when its wait is known: (request index, wait s or None for a 429,
# how it was answered).
Answer_ = Callable[[int, "float | None", int], None]

INVOKE_TIMEOUT_S = 60.0
"""SageMaker answers an invocation within 60 s: a model that can't answer by then (queued
behind others) gives the client an error."""

SNAP_S = 0.05
"""How near a replayed load's, unload's or request's reckoned end must be to its recorded end to
take it (the reckoning drifts by a few milliseconds per call)."""

_DOWNLOADED, _LOADED, _UNLOADED, _GHOST_UNLOADED, _DONE, _REJECTED, _MEASURED = range(7)
_NOTHING_RECORDED = Workload([], [], [], [])
_Call = TypeVar("_Call", LoadRecord, UnloadRecord)


class ContainerOutOfMemory(Exception):
    """The container answered 507: the model does not fit in the instance's memory."""


LOADED, LOADING, DOWNLOADING = ModelState.LOADED, ModelState.LOADING, ModelState.DOWNLOADING


class Instance:
    # Slots, as `CacheMachine`'s: past 30 attributes CPython 3.11 keeps an instance's in a
    # plain dict, and every attribute read and method call becomes a lookup by name.
    __slots__ = (
        "_begins",
        "_done_at",
        "_free",
        "_gpu_limit",
        "_host_limit",
        "_in_memory",
        "_lane_free",
        "_loading",
        "_model_index",
        "_ops",
        "_out_of_memory",
        "_perform_one",
        "_queueing",
        "_recorded",
        "_recorded_loads",
        "_recorded_unloads",
        "_rng",
        "_routed",
        "_seq",
        "_serial",
        "_stall_share",
        "_stalls",
        "_unload_blocks",
        "_unloads_end",
        "_waiting",
        "answer",
        "busy_until",
        "config",
        "costs",
        "deadlines",
        "errors",
        "events",
        "first_eviction",
        "first_loaded",
        "gpu_in_use",
        "host_in_use",
        "keys",
        "load_times",
        "machine",
        "not_ready",
        "now",
        "peak_gpu",
        "peak_host",
        "rejected_loads",
    )

    def __init__(
        self,
        config: SimConfig,
        costs: ModelCosts,
        answer: Answer_,
        first_loaded: dict[int, float] | None = None,
        index: int = 0,
        recorded: Workload | None = None,
    ) -> None:
        """`recorded`: the recorded run being replayed, whose loads, unloads and request ends
        the replay follows (see the module's docstring)."""
        self.costs = costs
        self.config = config
        self.answer = answer
        self.now = 0.0
        self.machine = machine = CacheMachine(
            config.budgets,
            cache_enabled=config.cache_enabled,
            max_parallel_downloads=config.parallel_downloads,
            max_parallel_loads=config.parallel_loads,
            clock=self._clock,
            name_of=str,
            track_gpu=config.base_gpu_bytes is not None,
            record_evictions=False,
        )
        machine.base_host = config.base_host_bytes
        if config.base_gpu_bytes is not None:
            machine.base_gpu = config.base_gpu_bytes
        self.keys = [str(m) for m in range(len(costs.disk_bytes))]
        self._model_index = {key: m for m, key in enumerate(self.keys)}
        """Model name -> its index (a lookup costs a fifth of `int(name)`)."""
        # Two time-ordered queues, ties broken by one sequence number so events replay in the
        # order they were scheduled: a heap for work and service ends, and a FIFO for the
        # ready deadlines (arrival + a fixed timeout, so already in order: no heap needed).
        self.events: list[tuple[float, int, int, ModelEntry]] = []
        self.deadlines: deque[tuple[float, int, int, ModelEntry]] = deque()
        self._seq = 0
        self._waiting: dict[int, tuple[float, float]] = {}
        """Request index -> (arrival, service s) while it waits for its model."""
        run = recorded or _NOTHING_RECORDED
        self._recorded_loads = _mine(run.loads, index)
        self._recorded_unloads = _mine(run.unloads, index)
        """Model -> its next recorded loads (unloads) on this instance, in order."""
        self._loading: dict[str, LoadRecord] = {}
        """Model -> the recorded load its load in flight (or measurement due) replays."""
        self._done_at = run.done_at
        """Request index -> when it let go of its model in the recorded run (or None)."""
        self._recorded: dict[str, tuple[float, float]] = {}
        """Model -> the recorded (download s, load s) of its next download and load."""
        self._serial = config.serial_model_control
        # Settings read for every load, unload or request, as attributes of their own.
        self._out_of_memory = config.out_of_memory
        self._host_limit = config.budgets.host_memory_bytes
        self._gpu_limit = config.budgets.gpu_memory_bytes
        self._lane_free = 0.0
        """With serial model control: when the last load or unload started ends."""
        self.busy_until: dict[int, float] = {}
        self._queueing = config.queueing
        self._routed = config.count > 1
        self._unload_blocks = config.unload_blocks_invokes
        self._stall_share = config.stall_share
        self._stalls = config.unload_blocks_invokes or config.stall_share > 0
        self._ops: list[float] = []
        """When each load and unload in flight ends (a heap), for the front end's stalls."""
        self._unloads_end = 0.0
        self._rng = random.Random(0)
        self._free: dict[int, list[float]] = {}
        """Model -> when each of its instances is next free (a heap), with queueing."""
        self._begins: dict[int, deque[float]] = {}
        """Model -> when each request queued for its instances will begin (in order)."""
        self.peak_host = self.peak_gpu = 0
        self.not_ready = self.errors = self.rejected_loads = 0
        self.first_loaded = {} if first_loaded is None else first_loaded
        """Model -> when it first finished loading (shared by an endpoint's instances)."""
        self.load_times: list[float] = []
        self.first_eviction: float | None = None
        """When a model was first unloaded (its unload's end) or deleted to make room."""
        # What the instance really holds (loads in flight included), which the cache only
        # learns after each model's first load: a load that would pass a budget fails (507).
        self.host_in_use = config.base_host_bytes
        self.gpu_in_use = config.base_gpu_bytes or 0
        self._in_memory: set[str] = set()
        self._perform_one: dict[type, Callable[[Command], None]] = {
            Answer: self._answered,  # type: ignore[dict-item]
            Probe: self._probe,  # type: ignore[dict-item]
            Download: self._download,  # type: ignore[dict-item]
            Load: self._load,  # type: ignore[dict-item]
            Unload: self._unload,  # type: ignore[dict-item]
            Delete: self._deleted,  # type: ignore[dict-item]
        }

    def _clock(self) -> float:
        return self.now

    # ----- arrivals -------------------------------------------------------------------------

    def request(
        self,
        index: int,
        t: float,
        model: int,
        service_s: float,
        recorded: tuple[float, float] | None = None,
    ) -> None:
        """One request; `recorded` is the (download s, load s) its cold start took in a
        recorded run, if it was one."""
        if (self.events and self.events[0][0] <= t) or (
            self.deadlines and self.deadlines[0][0] <= t
        ):
            self.advance(t)
        self.now = t
        key = self.keys[model]
        machine = self.machine
        entry = machine.request(index, key)
        if entry.state is LOADED:
            if self._queueing:
                self._serve(entry, index, model, t, service_s, 0.0, HIT)
            else:
                self.answer(index, 0.0, HIT)
                end = t + service_s
                if self._done_at is not None:
                    end = self._recorded_end(index, t, end)
                if end > self.busy_until.get(model, 0.0):
                    self.busy_until[model] = end
                if end > t:
                    self._seq += 1
                    heapq.heappush(self.events, (end, self._seq, _DONE, entry))
                else:
                    machine.done(entry)
        else:
            self._waiting[index] = (t, service_s)
            if recorded is not None and entry.waiters and entry.waiters[0] == index:
                self._recorded[key] = recorded
            self._seq += 1
            self.deadlines.append((t + self.config.ready_timeout_s, self._seq, index, entry))
        if machine.outbox:
            self._perform()

    def _serve(
        self,
        entry: ModelEntry,
        index: int,
        model: int,
        start: float,
        service_s: float,
        waited: float,
        how: int,
    ) -> None:
        """Answer the request: with queueing, it waits for one of the model's instances
        (first come, first served) and that wait counts in its added latency; so do the
        model server's stalls (`_stalled`)."""
        stalled = 0.0
        if self._stalls:
            stalled = self._stalled(start) - start
            waited += stalled
            start += stalled
        if self._queueing:
            free = self._free.get(model)
            if free is None:
                free = self._free[model] = [0.0] * self._instances(model)
            first = free[0]
            if first > start:
                heapq.heapreplace(free, first + service_s)
                if self._routed:  # only routing over several instances asks for queues
                    begins = self._begins.get(model)
                    if begins is None:
                        begins = self._begins[model] = deque()
                    begins.append(first)
                queued = first - start
                start = first
            else:
                heapq.heapreplace(free, start + service_s)
                queued = 0.0
            if stalled + queued + service_s > INVOKE_TIMEOUT_S:
                # The model can't answer within SageMaker's 60 s: the client gets an error
                # then, while the model still works through the queue.
                how = HIT_TIMED_OUT if how == HIT else ERROR
                waited += INVOKE_TIMEOUT_S - service_s - stalled
                self.errors += 1
            else:
                waited += queued
        self.answer(index, waited, how)
        end = start + service_s
        if self._done_at is not None:
            end = self._recorded_end(index, start, end)
        busy_until = self.busy_until
        if end > busy_until.get(model, 0.0):
            busy_until[model] = end
        if end > start:
            self._seq += 1
            heapq.heappush(self.events, (end, self._seq, _DONE, entry))
        else:
            self.machine.done(entry)

    def _recorded_end(self, index: int, start: float, end: float) -> float:
        """The request's recorded end if it is within `SNAP_S` of the reckoned one."""
        assert self._done_at is not None
        recorded = self._done_at[index]
        if recorded is not None and start <= recorded and abs(recorded - end) <= SNAP_S:
            return recorded
        return end

    def _stalled(self, start: float) -> float:
        """When a request the model could start at `start` gets to Triton's model: from
        Triton 2.64 (25.11) every invocation waits while any model unloads (the SageMaker
        front end holds its model-list mutex for the whole unload); in every version a
        request whose front-end thread is running a load or unload waits for it, which a
        `stall_share` of the requests arriving during one does (their thread is unknown)."""
        begin = start
        if self._unload_blocks and self._unloads_end > begin:
            begin = self._unloads_end
        ops = self._ops
        if not ops:
            return begin
        while ops and ops[0] <= start:
            heapq.heappop(ops)
        if ops and self._rng.random() < self._stall_share:
            end = ops[int(self._rng.random() * len(ops))]
            if end > begin:
                begin = end
        return begin

    def _instances(self, model: int) -> int:
        counts = self.costs.instances
        return 1 if counts is None else max(1, counts[model])

    def queued(self, model: int, t: float) -> int:
        """Requests for the model waiting at `t` for one of its instances."""
        begins = self._begins.get(model)
        if not begins:
            return 0
        while begins and begins[0] <= t:
            begins.popleft()
        return len(begins)

    def holds(self, model: int) -> bool:
        entry = self.machine.models.get(self.keys[model])
        return entry is not None and entry.state in (LOADED, LOADING, DOWNLOADING)

    def busy(self, model: int, t: float) -> bool:
        """Loaded and too busy at `t` for one more request: with queueing, at least
        `busy_queue` requests wait for its instances; without, one is being answered. A load
        in flight is not busy: wait on it."""
        entry = self.machine.models[self.keys[model]]
        if entry.state is not LOADED:
            return False
        if self.config.queueing:
            return self.queued(model, t) >= self.config.busy_queue
        return self.busy_until.get(model, 0.0) > t

    @property
    def memory_held(self) -> int:
        """What routing compares: the memory of the models that stay."""
        return self.machine.memory_staying

    def advance(self, until: float) -> None:
        """Process every event up to `until`, in time order."""
        events, deadlines, machine = self.events, self.deadlines, self.machine
        pop = heapq.heappop
        disk_bytes = self.costs.disk_bytes
        waiting = self._waiting
        model_index = self._model_index
        while True:
            # The earlier of the two heads; (time, sequence) decides, as the sequence numbers
            # are unique across both queues.
            if deadlines and deadlines[0][0] <= until and (not events or deadlines[0] < events[0]):
                self.now, _, index, entry = deadlines.popleft()
                # Most deadlines find their request answered already: no need to ask.
                if index in waiting and machine.abandon(index, entry):
                    self.not_ready += 1
                    self.answer(index, None, NOT_READY)
                    del waiting[index]
                    if machine.outbox:
                        self._perform()
                continue
            if not events or events[0][0] > until:
                return
            self.now, _, kind, entry = pop(events)
            if kind == _DONE:
                machine.done(entry)
            elif kind == _DOWNLOADED:
                machine.downloaded(entry, disk_bytes[model_index[entry.target_model]], None)
            elif kind == _LOADED:
                model = model_index[entry.target_model]
                machine.loaded(entry)
                replayed = self._loading.get(entry.target_model) if self._loading else None
                if replayed is not None and replayed.measure_s:
                    self._seq += 1
                    heapq.heappush(
                        events, (self.now + replayed.measure_s, self._seq, _MEASURED, entry)
                    )
                else:
                    self._measured(entry, model)
                self.load_times.append(self.now)
                self.first_loaded.setdefault(model, self.now)
                self._peaks()
            elif kind == _MEASURED:
                self._measured(entry, model_index[entry.target_model])
                self._peaks()
            elif kind == _REJECTED:
                self.rejected_loads += 1
                machine.load_rejected_for_memory(
                    entry, ContainerOutOfMemory(f"{entry.target_model} does not fit in memory")
                )
            else:
                self._left_memory(entry)
                machine.unloaded(entry, ghost=kind == _GHOST_UNLOADED)
                if self.first_eviction is None and kind == _UNLOADED:
                    self.first_eviction = self.now
            if machine.outbox:
                self._perform()

    def _measured(self, entry: ModelEntry, model: int) -> None:
        """The model's memory as measured: the profile's, or what the recorded run measured
        for this load, with the server's own memory as the live cache then counted it."""
        host = self.costs.host_bytes[model]
        replayed = self._loading.pop(entry.target_model, None) if self._loading else None
        if replayed is not None:
            if replayed.memory_bytes is not None:
                host = replayed.memory_bytes
            if replayed.base_bytes is not None:
                self.machine.set_base_memory(replayed.base_bytes, None)
        self.machine.measured(entry, host, self.costs.gpu_bytes[model])

    # ----- the executor's part ----------------------------------------------------------------

    def _perform(self) -> None:
        outbox = self.machine.outbox
        perform = self._perform_one
        # Commands the handlers cause join the end of the list and are met in turn (a
        # list's iterator reads its length at each step), in the order batches would take.
        for command in outbox:
            handler = perform.get(type(command))
            if handler is not None:
                handler(command)
        outbox.clear()

    def _probe(self, command: Probe) -> None:
        entry = command.entry
        self.machine.probed(entry, self.costs.archive_bytes[self._model_index[entry.target_model]])

    def _download(self, command: Download) -> None:
        entry = command.entry
        recorded = self._recorded.get(entry.target_model)
        model = self._model_index[entry.target_model]
        took = self.costs.download_s[model] if recorded is None else recorded[0]
        self._seq += 1
        heapq.heappush(self.events, (self.now + took, self._seq, _DOWNLOADED, entry))

    def _load(self, command: Load) -> None:
        entry = command.entry
        model = self._model_index[entry.target_model]
        recorded = self._recorded.pop(entry.target_model, None)
        took = self.costs.load_s[model] if recorded is None else recorded[1]
        # The container fails a load that runs out of memory: at its end, at worst.
        kind = _REJECTED if self._out_of_memory and not self._fits(entry, model) else _LOADED
        at = self._lane(took) if self._serial else self.now + took
        if self._recorded_loads:
            replayed = _next(self._recorded_loads, model)
            if replayed is not None:
                at = self._snapped(at, took, replayed.time)
                if at == replayed.time:
                    # The recorded load is this one (a load that failed live has no record,
                    # and a diverged replay loads others): its measurement stands too.
                    self._loading[entry.target_model] = replayed
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, entry))
        if self._stall_share:
            heapq.heappush(self._ops, at)

    def _lane(self, took: float) -> float:
        """With serial model control: when a load or unload started now ends, after the ones
        before it."""
        end = max(self.now, self._lane_free) + took
        self._lane_free = end
        return end

    def _snapped(self, end: float, took: float, recorded_end: float) -> float:
        """A replayed call's end: the recorded one if within `SNAP_S` of the reckoned `end`
        (and not before the call could start); the lane follows."""
        if recorded_end < end - took or abs(recorded_end - end) > SNAP_S:
            return end
        if self._serial:
            self._lane_free = recorded_end
        return recorded_end

    def _fits(self, entry: ModelEntry, model: int) -> bool:
        """Take the model's memory if the instance has it (what a load really allocates)."""
        host = self.host_in_use + self.costs.host_bytes[model]
        gpu = self.gpu_in_use + self.costs.gpu_bytes[model]
        limit = self._host_limit
        if limit is not None and host > limit:
            return False
        limit = self._gpu_limit
        if limit is not None and gpu > limit:
            return False
        self.host_in_use, self.gpu_in_use = host, gpu
        self._in_memory.add(entry.target_model)
        return True

    def _left_memory(self, entry: ModelEntry) -> None:
        if entry.target_model in self._in_memory:
            self._in_memory.remove(entry.target_model)
            model = self._model_index[entry.target_model]
            self.host_in_use -= self.costs.host_bytes[model]
            self.gpu_in_use -= self.costs.gpu_bytes[model]

    def _deleted(self, command: Delete) -> None:
        # Every deletion is an eviction or follows one at once (a model reclaimed for disk
        # room is deleted as its unload ends).
        if self.first_eviction is None:
            self.first_eviction = self.now

    def _unload(self, command: Unload) -> None:
        entry = command.entry
        kind = _GHOST_UNLOADED if command.ghost else _UNLOADED
        model = self._model_index[entry.target_model]
        replayed = None
        if not command.ghost and self._recorded_unloads:
            replayed = _next(self._recorded_unloads, model)
        took = self.costs.unload_s[model] if replayed is None else replayed.unload_s
        at = self._lane(took) if self._serial else self.now + took
        if replayed is not None:
            at = self._snapped(at, took, replayed.time)
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, entry))
        if self._stall_share:
            heapq.heappush(self._ops, at)
        if at > self._unloads_end:
            self._unloads_end = at

    def _answered(self, command: Answer) -> None:
        index = command.request
        waiting = self._waiting.pop(index, None)
        if waiting is None:
            return
        arrived, service_s = waiting
        if command.error is not None:
            self.answer(index, self.now - arrived, ERROR)
            self.errors += 1
            self.machine.done(command.entry)
            return
        model = self._model_index[command.entry.target_model]
        self._serve(command.entry, index, model, self.now, service_s, self.now - arrived, COLD)

    def _peaks(self) -> None:
        if self._out_of_memory:
            self.peak_host = max(self.peak_host, self.host_in_use)
            self.peak_gpu = max(self.peak_gpu, self.gpu_in_use)
            return
        self.peak_host = max(self.peak_host, self.machine.host_used)
        gpu = self.machine.gpu_used
        if gpu is not None:
            self.peak_gpu = max(self.peak_gpu, gpu)


def _mine(
    recorded: dict[tuple[int, int], list[_Call]] | None, index: int
) -> dict[int, deque[_Call]]:
    """Model -> one instance's recorded calls, in order."""
    return {
        model: deque(calls)
        for (instance, model), calls in (recorded or {}).items()
        if instance == index
    }


def _next(recorded: dict[int, deque[_Call]], model: int) -> _Call | None:
    calls = recorded.get(model)
    return calls.popleft() if calls else None
