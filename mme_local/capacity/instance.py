"""One simulated instance: the live cache's own state machine on a virtual clock.

The decisions are `cache.machine.CacheMachine`'s, the very class the emulator runs; this
module only plays the executor's part with measured costs instead of I/O: a download ends
`download_s` later with the model's extracted size, a load `load_s` later and then reports the
model's memory, an unload `unload_s` later. A request that waits longer than the ready timeout
is answered 429 (the work goes on), and a request holds its model for its service time.

When replaying a recorded run, a load started by a request that was a cold start in the
recording takes the time that request waited (its download included), not the profile's times.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import Answer, CacheMachine, Download, Load, Probe, Unload

if TYPE_CHECKING:
    from mme_local.capacity.simulator import ModelCosts, SimConfig

# Called once per request when its wait is known: (request index, wait s or None for a 429).
Answer_ = Callable[[int, "float | None"], None]

_DOWNLOADED, _LOADED, _UNLOADED, _GHOST_UNLOADED, _DONE, _DEADLINE = range(6)
LOADED, LOADING, DOWNLOADING = ModelState.LOADED, ModelState.LOADING, ModelState.DOWNLOADING


class Instance:
    def __init__(self, config: SimConfig, costs: ModelCosts, answer: Answer_) -> None:
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
            keep_evictions=0,
        )
        machine.base_host = config.base_host_bytes
        if config.base_gpu_bytes is not None:
            machine.base_gpu = config.base_gpu_bytes
        self.keys = [str(m) for m in range(len(costs.disk_bytes))]
        self.events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._arrived: dict[int, float] = {}
        self._service: dict[int, float] = {}
        self._recorded_end: dict[str, float] = {}
        self.busy_until: dict[int, float] = {}
        self.peak_host = self.peak_gpu = 0
        self.not_ready = self.errors = 0

    def _clock(self) -> float:
        return self.now

    # ----- arrivals -------------------------------------------------------------------------

    def request(self, index: int, t: float, model: int, service_s: float, recorded: float) -> None:
        """One request; `recorded` is its cold-start wait in a recorded run (-1 if none)."""
        if self.events and self.events[0][0] <= t:
            self.advance(t)
        self.now = t
        key = self.keys[model]
        entry = self.machine.request(index, key)
        if entry.state is LOADED:
            self.answer(index, 0.0)
            self._serve(entry, index, model, t, service_s)
        else:
            self._arrived[index] = t
            self._service[index] = service_s
            if recorded >= 0 and entry.waiters and entry.waiters[0] == index:
                self._recorded_end[key] = t + recorded
            self._push(t + self.config.ready_timeout_s, _DEADLINE, (index, entry))
        if self.machine.outbox:
            self._perform()

    def _serve(
        self, entry: ModelEntry, index: int, model: int, start: float, service_s: float
    ) -> None:
        end = start + service_s
        if end > self.busy_until.get(model, 0.0):
            self.busy_until[model] = end
        if service_s > 0:
            self._push(end, _DONE, entry)
        else:
            self.machine.done(entry)

    def holds(self, model: int) -> bool:
        entry = self.machine.models.get(self.keys[model])
        return entry is not None and entry.state in (LOADED, LOADING, DOWNLOADING)

    def busy(self, model: int, t: float) -> bool:
        """Loaded and answering a request at `t` (a load in flight is not busy: wait on it)."""
        entry = self.machine.models[self.keys[model]]
        return entry.state is LOADED and self.busy_until.get(model, 0.0) > t

    @property
    def memory_held(self) -> int:
        return self.machine.host_held + self.machine.gpu_held

    def advance(self, until: float) -> None:
        """Process every event up to `until`, in time order."""
        events, machine = self.events, self.machine
        while events and events[0][0] <= until:
            at, _, kind, payload = heapq.heappop(events)
            self.now = at
            if kind == _DONE:
                machine.done(payload)  # type: ignore[arg-type]
            elif kind == _DEADLINE:
                index, entry = payload  # type: ignore[misc]
                if machine.abandon(index, entry):
                    self.not_ready += 1
                    self.answer(index, None)
                    self._arrived.pop(index, None)
            elif kind == _DOWNLOADED:
                entry = payload  # type: ignore[assignment]
                machine.downloaded(entry, self.costs.disk_bytes[int(entry.target_model)], None)
            elif kind == _LOADED:
                entry = payload  # type: ignore[assignment]
                model = int(entry.target_model)
                machine.loaded(entry)
                machine.measured(entry, self.costs.host_bytes[model], self.costs.gpu_bytes[model])
                self._peaks()
            else:
                machine.unloaded(payload, ghost=kind == _GHOST_UNLOADED)  # type: ignore[arg-type]
            if machine.outbox:
                self._perform()

    # ----- the executor's part ----------------------------------------------------------------

    def _push(self, at: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, payload))

    def _perform(self) -> None:
        machine, costs, now = self.machine, self.costs, self.now
        outbox = machine.outbox
        while outbox:
            commands = list(outbox)
            outbox.clear()
            for command in commands:
                if isinstance(command, Answer):
                    self._answered(command)
                    continue
                if isinstance(command, (Probe, Download, Load, Unload)):
                    entry = command.entry
                    model = int(entry.target_model)
                if isinstance(command, Probe):
                    machine.probed(entry, costs.archive_bytes[model])
                elif isinstance(command, Download):
                    recorded = entry.target_model in self._recorded_end
                    took = 0.0 if recorded else costs.download_s[model]
                    self._push(now + took, _DOWNLOADED, entry)
                elif isinstance(command, Load):
                    end = self._recorded_end.pop(entry.target_model, None)
                    at = max(now, end) if end is not None else now + costs.load_s[model]
                    self._push(at, _LOADED, entry)
                elif isinstance(command, Unload):
                    kind = _GHOST_UNLOADED if command.ghost else _UNLOADED
                    self._push(now + costs.unload_s[model], kind, entry)

    def _answered(self, command: Answer) -> None:
        index = command.request
        arrived = self._arrived.pop(index, None)
        if arrived is None:
            return
        service_s = self._service.pop(index)
        if command.error is not None:
            self.errors += 1
            self.answer(index, self.now - arrived)
            self.machine.done(command.entry)
            return
        self.answer(index, self.now - arrived)
        model = int(command.entry.target_model)
        self._serve(command.entry, index, model, self.now, service_s)

    def _peaks(self) -> None:
        self.peak_host = max(self.peak_host, self.machine.host_used)
        gpu = self.machine.gpu_used
        if gpu is not None:
            self.peak_gpu = max(self.peak_gpu, gpu)
