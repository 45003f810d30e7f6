"""A discrete-event simulation of the MME platform over a workload, for N instances.

Each instance keeps what the live cache keeps for each model (state, last use, pins as the
time its last request ends, the one transition in flight as the time it ends) and asks the
very `EvictionPolicy` the live cache asks which model to unload and whether there is room.
The rules are the cache's (`cache/manager.py`):

- A request is a hit when its model is loaded with no transition in flight; otherwise it
  waits for the model's one transition (single flight), starting it if there is none.
- A load first makes room by count: the least recently used idle model's unload starts and
  the load goes on beside it. Then, once the model's memory is known from an earlier load,
  by memory: unloads that the load waits for. After the load, unloads until memory fits.
- A download is followed by deleting idle on-disk-only models until disk fits.
- A request that waits longer than the ready timeout is answered 429; the load carries on.
- With the model cache disabled, a model is unloaded and deleted when its last request ends.

Transitions are resolved in arrival order: a request's download and load are laid out in
time when it arrives (after any unload in flight and, if transitions are bounded, after a
free slot). That is exact for requests that do not overlap a transition and close otherwise.

Routing over several instances: a request goes to an instance that has its model loaded (or
loading), else to the instance with the least model memory in use (ties: the lowest index).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from mme_local.cache.policy import Budgets, EvictionPolicy
from mme_local.capacity.profile import Profile
from mme_local.capacity.workload import Workload

_REMOTE, _ON_DISK, _LOADED = 0, 1, 2


@dataclass(frozen=True)
class ModelCosts:
    """Per model index: what a load costs in bytes and seconds."""

    host_bytes: list[int]
    gpu_bytes: list[int]
    disk_bytes: list[int]
    download_s: list[float]
    load_s: list[float]
    unload_s: list[float]
    latency_s: list[float]


def model_costs(workload: Workload, profile: Profile, cloud: bool) -> ModelCosts:
    """Costs from the profile: the cloud's footprints (`cloud`), or the raw measured ones."""
    fps = workload.footprints
    if cloud:
        host = [profile.cloud_host_bytes(f) for f in fps]
    else:
        host = [f.host_memory_bytes for f in fps]
    return ModelCosts(
        host_bytes=host,
        gpu_bytes=[profile.cloud_gpu_bytes(f) for f in fps],
        disk_bytes=[f.extracted_bytes for f in fps],
        download_s=[f.download_s for f in fps],
        load_s=[f.load_s for f in fps],
        unload_s=[f.unload_s for f in fps],
        latency_s=[f.warm_latency_s or 0.0 for f in fps],
    )


@dataclass(frozen=True)
class SimConfig:
    budgets: Budgets
    count: int = 1
    base_host_bytes: int = 0
    """Memory in use with nothing loaded (the model server itself)."""
    base_gpu_bytes: int | None = None
    """None: GPU memory is not simulated (as the emulator without a GPU)."""
    parallel_transitions: int | None = None
    """Downloads+loads in flight at once per instance; None: unbounded (as the emulator)."""
    ready_timeout_s: float = 60.0
    cache_enabled: bool = True
    recorded_cold_starts: bool = False
    """Replaying a recorded run: a load started at a request that was a cold start in the
    recording takes the time that request waited, not the profile's times."""


@dataclass(frozen=True)
class SimResult:
    requests: int
    hits: int
    not_ready: int
    loads: int
    unloads: int
    downloads: int
    deletions: int
    over_budget_loads: int
    """Loads that went ahead over a budget because every loaded model was in use."""
    duration_s: float
    wait_p50_s: float
    wait_p99_s: float
    peak_host_bytes: int
    peak_gpu_bytes: int | None

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def per_hour(self, count: int) -> float:
        return count * 3600.0 / self.duration_s if self.duration_s > 0 else float(count)


class _Entry:
    """One model on one instance; satisfies the policy's `Candidate`."""

    __slots__ = ("busy_until", "disk", "inst", "known", "model", "ready_at", "state", "unloaded_at")

    def __init__(self, model: int, inst: _Instance) -> None:
        self.model = model
        self.inst = inst
        self.state = _REMOTE
        self.ready_at = 0.0
        """When the load (and the memory check after it) ends."""
        self.busy_until = 0.0
        """When the last request on it ends: pinned until then."""
        self.unloaded_at = 0.0
        """When its last unload ends: a transition until then."""
        self.disk = 0
        self.known = False
        """Memory measured by an earlier load (the cache checks memory before a load then)."""

    @property
    def evictable(self) -> bool:
        now = self.inst.now
        return self.state == _LOADED and self.ready_at <= now and self.busy_until <= now

    @property
    def deletable(self) -> bool:
        now = self.inst.now
        return self.state == _ON_DISK and self.unloaded_at <= now and self.busy_until <= now

    @property
    def disk_bytes(self) -> int:
        return self.disk


class _Instance:
    def __init__(self, config: SimConfig, costs: ModelCosts) -> None:
        self.policy = EvictionPolicy(config.budgets)
        self.costs = costs
        self.config = config
        self.now = 0.0
        self.entries: dict[int, _Entry] = {}
        # Least recently used first, as the cache's entries; the policy reads these.
        self.loaded: OrderedDict[int, _Entry] = OrderedDict()
        self.on_disk: OrderedDict[int, _Entry] = OrderedDict()
        self.host_loaded = 0
        self.gpu_loaded = 0
        self.freeing: list[tuple[float, int, int]] = []
        self.host_freeing = 0
        self.gpu_freeing = 0
        self.disk_used = 0
        self.slots: list[float] | None = (
            [0.0] * config.parallel_transitions if config.parallel_transitions else None
        )
        self.releases: list[tuple[float, int]] = []
        self.gpu = config.base_gpu_bytes is not None
        self.peak_host = 0
        self.peak_gpu = 0
        self.hits = self.not_ready = self.loads = self.unloads = 0
        self.downloads = self.deletions = self.over_budget = 0

    # ----- one request ------------------------------------------------------------------

    def request(self, t: float, model: int, service_s: float, recorded: float) -> float | None:
        """The request's wait for its model, or None when it is answered 429.

        `recorded`: the wait of this request's cold start in a recording (-1 if none).
        """
        self.now = t
        if self.freeing:
            self._freed(t)
        if self.releases:
            self._release(t)
        entry = self.entries.get(model)
        if entry is None:
            entry = self.entries[model] = _Entry(model, self)
        if entry.state == _LOADED and entry.ready_at <= t:
            self.hits += 1
            wait = 0.0
        elif entry.state == _LOADED:
            wait = entry.ready_at - t
        else:
            wait = self._materialize(entry, t, recorded) - t
        if wait > self.config.ready_timeout_s:
            self.not_ready += 1
            return None
        end = t + wait + service_s
        if end > entry.busy_until:
            entry.busy_until = end
        if model in self.loaded:
            self.loaded.move_to_end(model)
        if model in self.on_disk:
            self.on_disk.move_to_end(model)
        if not self.config.cache_enabled:
            heapq.heappush(self.releases, (end, model))
        return wait

    # ----- transitions --------------------------------------------------------------------

    def _materialize(self, entry: _Entry, t: float, recorded: float) -> float:
        start = max(t, entry.unloaded_at)
        if self.slots is not None:
            start = max(start, heapq.heappop(self.slots))
        model = entry.model
        if entry.state == _REMOTE:
            start += self.costs.download_s[model]
            self.downloads += 1
            entry.state = _ON_DISK
            entry.disk = self.costs.disk_bytes[model]
            self.disk_used += entry.disk
            self.on_disk[model] = entry
            if self.config.budgets.disk_bytes is not None:
                self.now = start
                self._enforce_disk(entry)
        self.now = start
        self._make_room(entry)
        entry.state = _LOADED
        self.loaded[model] = entry
        self.host_loaded += self.costs.host_bytes[model]
        self.gpu_loaded += self.costs.gpu_bytes[model]
        self.loads += 1
        self.now += self.costs.load_s[model]
        self._freed(self.now)
        self._peaks()
        self._enforce_memory(entry)
        entry.known = True
        entry.ready_at = self.now if recorded < 0 else t + recorded
        if self.slots is not None:
            heapq.heappush(self.slots, entry.ready_at)
        return entry.ready_at

    def _make_room(self, entry: _Entry) -> None:
        policy = self.policy
        while policy.count_full(len(self.loaded)):
            victim = policy.victim(self.loaded.values(), keep=entry)
            if victim is None:
                self.over_budget += 1
                break
            self._unload(victim, wait=False)
        host = self.costs.host_bytes[entry.model]
        gpu = self.costs.gpu_bytes[entry.model]
        if not entry.known or host == 0:
            return
        while policy.memory_short(self._host_used(), self._gpu_used(gpu), host):
            victim = policy.victim(self.loaded.values(), keep=entry)
            if victim is None:
                self.over_budget += 1
                break
            self._unload(victim, wait=True)

    def _enforce_memory(self, entry: _Entry) -> None:
        policy = self.policy
        while policy.memory_short(self._host_used(), self._gpu_used(0)):
            victim = policy.victim(self.loaded.values(), keep=entry)
            if victim is None:
                self.over_budget += 1
                return
            self._unload(victim, wait=True)

    def _enforce_disk(self, entry: _Entry) -> None:
        victims = list(self.policy.disk_victims(self.on_disk.values(), self.disk_used, entry))
        for victim in victims:
            self._delete(victim)
            self.deletions += 1

    def _unload(self, victim: _Entry, wait: bool) -> None:
        model = victim.model
        del self.loaded[model]
        host, gpu = self.costs.host_bytes[model], self.costs.gpu_bytes[model]
        self.host_loaded -= host
        self.gpu_loaded -= gpu
        victim.state = _ON_DISK
        victim.unloaded_at = self.now + self.costs.unload_s[model]
        self.unloads += 1
        heapq.heappush(self.freeing, (victim.unloaded_at, host, gpu))
        self.host_freeing += host
        self.gpu_freeing += gpu
        if wait:
            self.now = victim.unloaded_at
            self._freed(self.now)

    def _delete(self, entry: _Entry) -> None:
        self.disk_used -= entry.disk
        entry.disk = 0
        entry.state = _REMOTE
        del self.on_disk[entry.model]

    def _release(self, t: float) -> None:
        """Model cache disabled: unload and delete each model whose last request has ended."""
        while self.releases and self.releases[0][0] <= t:
            at, model = heapq.heappop(self.releases)
            entry = self.entries[model]
            if entry.busy_until != at or entry.state != _LOADED or entry.ready_at > at:
                continue
            self.now = at
            self._unload(entry, wait=False)
            self._delete(entry)
        self.now = t

    def finish(self) -> None:
        if self.releases:
            self._release(float("inf"))

    # ----- measurements ------------------------------------------------------------------------

    def _freed(self, t: float) -> None:
        while self.freeing and self.freeing[0][0] <= t:
            _, host, gpu = heapq.heappop(self.freeing)
            self.host_freeing -= host
            self.gpu_freeing -= gpu

    def _host_used(self) -> int:
        return self.config.base_host_bytes + self.host_loaded + self.host_freeing

    def _gpu_used(self, adding: int) -> int | None:
        base = self.config.base_gpu_bytes
        if base is None:
            return None
        return base + self.gpu_loaded + self.gpu_freeing + adding

    def _peaks(self) -> None:
        self.peak_host = max(self.peak_host, self._host_used())
        gpu = self._gpu_used(0)
        if gpu is not None:
            self.peak_gpu = max(self.peak_gpu, gpu)


def _route(instances: list[_Instance], model: int) -> _Instance:
    for inst in instances:
        if model in inst.loaded:
            return inst
    return min(instances, key=lambda inst: inst.host_loaded + inst.gpu_loaded)


def simulate(workload: Workload, costs: ModelCosts, config: SimConfig) -> SimResult:
    """Replay `workload` on `config.count` instances; counts, waits and peaks."""
    instances = [_Instance(config, costs) for _ in range(config.count)]
    waits = np.zeros(len(workload), dtype=np.float64)
    service = workload.service_s
    latency = costs.latency_s
    times, models = workload.times, workload.models
    cold = workload.cold_wait_s if config.recorded_cold_starts else None
    only = instances[0] if config.count == 1 else None
    for i in range(len(times)):
        model = models[i]
        inst = only if only is not None else _route(instances, model)
        wait = inst.request(
            times[i],
            model,
            service[i] if service else latency[model],
            cold[i] if cold else -1.0,
        )
        waits[i] = config.ready_timeout_s if wait is None else wait
    for inst in instances:
        # Unloads the model cache's disabled setting starts once the last answers are sent.
        inst.finish()
    return SimResult(
        requests=len(times),
        hits=sum(i.hits for i in instances),
        not_ready=sum(i.not_ready for i in instances),
        loads=sum(i.loads for i in instances),
        unloads=sum(i.unloads for i in instances),
        downloads=sum(i.downloads for i in instances),
        deletions=sum(i.deletions for i in instances),
        over_budget_loads=sum(i.over_budget for i in instances),
        duration_s=workload.duration_s,
        wait_p50_s=float(np.percentile(waits, 50)) if len(waits) else 0.0,
        wait_p99_s=float(np.percentile(waits, 99)) if len(waits) else 0.0,
        peak_host_bytes=max(i.peak_host for i in instances),
        peak_gpu_bytes=max(i.peak_gpu for i in instances)
        if config.base_gpu_bytes is not None
        else None,
    )
