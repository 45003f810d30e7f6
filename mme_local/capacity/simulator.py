"""The simulation of an MME over a workload, for N instances: costs, configuration, results.

Each instance runs the live cache's own state machine (`instance.py`). Routing over several
instances follows AWS's "How multi-model endpoints work": requests for a model keep going to an
instance where it is loaded, and when it gets many requests some go to another instance, which
loads it too. Here:
an instance that holds the model (loaded or loading) and is not answering a request for it;
else, if some instance doesn't hold it, the one of those with the least model memory in use
(ties: the lowest index); else the holding instance that is free soonest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mme_local.cache.policy import Budgets
from mme_local.capacity.instance import Instance
from mme_local.capacity.profile import Profile
from mme_local.capacity.workload import Workload


@dataclass(frozen=True)
class ModelCosts:
    """Per model index: what a load costs in bytes and seconds."""

    host_bytes: list[int]
    gpu_bytes: list[int]
    disk_bytes: list[int]
    archive_bytes: list[int]
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
        archive_bytes=[f.archive_bytes for f in fps],
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
    parallel_downloads: int | None = None
    """Downloads at once per instance (the cache's download slots); None: unbounded."""
    parallel_loads: int | None = None
    """Loads at once per instance (the cache's load slots); None: unbounded."""
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
    errors: int = 0
    """Requests answered with an error (e.g. a model larger than the disk budget)."""

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def per_hour(self, count: int) -> float:
        return count * 3600.0 / self.duration_s if self.duration_s > 0 else float(count)


def route(instances: list[Instance], model: int, t: float) -> Instance:
    for inst in instances:
        inst.advance(t)
    holding = [inst for inst in instances if inst.holds(model)]
    for inst in holding:
        if not inst.busy(model, t):
            return inst
    others = [inst for inst in instances if inst not in holding]
    if others:
        return min(others, key=lambda inst: inst.memory_held)
    return min(holding, key=lambda inst: inst.busy_until.get(model, 0.0))


def simulate(workload: Workload, costs: ModelCosts, config: SimConfig) -> SimResult:
    """Replay `workload` on `config.count` instances; counts, waits and peaks."""
    waits = np.zeros(len(workload), dtype=np.float64)
    timeout = config.ready_timeout_s

    def answer(index: int, wait: float | None) -> None:
        waits[index] = timeout if wait is None else wait

    instances = [Instance(config, costs, answer) for _ in range(config.count)]
    service = workload.service_s
    latency = costs.latency_s
    times, models = workload.times, workload.models
    cold = workload.cold_wait_s if config.recorded_cold_starts else None
    only = instances[0] if config.count == 1 else None
    for i in range(len(times)):
        model, t = models[i], times[i]
        inst = only if only is not None else route(instances, model, t)
        inst.request(
            i, t, model, service[i] if service else latency[model], cold[i] if cold else -1.0
        )
    for inst in instances:
        inst.advance(float("inf"))
    machines = [inst.machine for inst in instances]
    return SimResult(
        requests=len(times),
        hits=sum(m.hits for m in machines),
        not_ready=sum(i.not_ready for i in instances),
        loads=sum(m.loads for m in machines),
        unloads=sum(m.unloads for m in machines),
        downloads=sum(m.downloads for m in machines),
        deletions=sum(m.deletions for m in machines),
        over_budget_loads=sum(m.over_budget_loads for m in machines),
        duration_s=workload.duration_s,
        wait_p50_s=float(np.percentile(waits, 50)) if len(waits) else 0.0,
        wait_p99_s=float(np.percentile(waits, 99)) if len(waits) else 0.0,
        peak_host_bytes=max(i.peak_host for i in instances),
        peak_gpu_bytes=max(i.peak_gpu for i in instances)
        if config.base_gpu_bytes is not None
        else None,
        errors=sum(i.errors for i in instances),
    )
