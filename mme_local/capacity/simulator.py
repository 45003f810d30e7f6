"""The simulation of an MME over a workload, for N instances: costs, configuration, results.

Each instance runs the live cache's own state machine (`instance.py`). Requests are spread
over several instances by the rule the live gateway runs with `up --instance-count N`
(`mme_local.routing`); "busy" is the instance's own (`Instance.busy`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mme_local.cache.policy import Budgets
from mme_local.capacity.instance import ERROR, HIT, HIT_TIMED_OUT, NOT_READY, Instance
from mme_local.capacity.memory_model import Allowances, cloud_memory
from mme_local.capacity.profile import Profile
from mme_local.capacity.workload import Workload
from mme_local.routing import route as shared_route


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
    gpu_estimated: bool = False
    """Some GPU footprint is an estimate (no GPU profile for its artifact)."""
    instances: list[int] | None = None
    """Per model: how many requests it serves at once (its config's instance count)."""


def model_costs(
    workload: Workload, profile: Profile, cloud: bool, allowances: Allowances | None = None
) -> ModelCosts:
    """Costs from the profile: what each model holds on a GPU instance (`cloud`, see
    `memory_model`), or the raw measured footprints (the emulator's own budgets)."""
    fps = workload.footprints
    if cloud:
        allowances = allowances or Allowances()
        by_id = {
            id(f): cloud_memory(profile, f, allowances) for f in {id(f): f for f in fps}.values()
        }
        memory = [by_id[id(f)] for f in fps]
        host = [m.host_bytes for m in memory]
        gpu = [m.gpu_bytes for m in memory]
        estimated = any(m.estimated for m in by_id.values())
    else:
        host = [f.host_memory_bytes for f in fps]
        gpu = [profile.cloud_gpu_bytes(f) for f in fps]
        estimated = False
    return ModelCosts(
        host_bytes=host,
        gpu_bytes=gpu,
        disk_bytes=[f.extracted_bytes for f in fps],
        archive_bytes=[f.archive_bytes for f in fps],
        download_s=[f.download_s for f in fps],
        load_s=[f.load_s for f in fps],
        unload_s=[f.unload_s for f in fps],
        latency_s=[f.warm_latency_s or 0.0 for f in fps],
        gpu_estimated=estimated,
        instances=[f.instance_count or 1 for f in fps],
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
    """Replaying a recorded run: the download and load started for a request that was a
    cold start in the recording take the times recorded for them, not the profile's."""
    serial_model_control: bool = False
    """Loads and unloads run one at a time, in the order they were started, as the emulator
    sends them to Triton (`ContainerDialect.serial_model_control`)."""
    out_of_memory: bool = False
    """A load that does not fit in the instance's memory fails as the container answers it
    (507: the platform unloads an idle model and loads once more, else the request gets the
    error). Off for the emulator's own budgets, which load over a budget and log it."""
    queueing: bool = False
    """A loaded model answers as many requests at once as it has instances, each taking its
    service time; the rest queue, and the queueing counts in added latency. Off for replays
    of recorded runs, whose recorded model latency has the real queueing in it."""
    unload_blocks_invokes: bool = False
    """Triton 2.64 (25.11) and later: every invocation waits while any model unloads."""
    stall_share: float = 0.0
    """Share of the requests arriving during a load or unload that wait for it (their
    front-end thread is running it), in every Triton version."""
    busy_queue: int = 4
    """With queueing and several instances: a model with this many requests queued is busy,
    and the next request goes to another instance."""


@dataclass(frozen=True)
class Window:
    """Figures over the requests that arrived in one stretch of the run."""

    requests: int
    hits: int
    not_ready: int
    errors: int
    loads: int
    duration_s: float
    wait_p50_s: float
    wait_p99_s: float

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def failed_share(self) -> float:
        """Requests answered 429 or with an error, as a share of all."""
        return (self.not_ready + self.errors) / self.requests if self.requests else 0.0

    @property
    def loads_per_hour(self) -> float:
        return self.loads * 3600.0 / self.duration_s if self.duration_s > 0 else float(self.loads)


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
    """Requests answered with an error (a load that did not fit, a model larger than the
    disk budget)."""
    rejected_loads: int = 0
    """Loads the container refused for memory (507)."""
    warmup_s: float | None = None
    """Seconds from the first request until every model that fits had loaded: every model
    the workload names loaded once, or the first eviction (the instance is full), whichever
    came first; None if neither happened (the whole run is warm-up)."""
    warmup_requests: int = 0
    steady: Window | None = None
    """The requests that arrived after the warm-up; None if it never ended."""

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    def per_hour(self, count: int) -> float:
        return count * 3600.0 / self.duration_s if self.duration_s > 0 else float(count)

    @property
    def whole(self) -> Window:
        return Window(
            self.requests,
            self.hits,
            self.not_ready,
            self.errors,
            self.loads,
            self.duration_s,
            self.wait_p50_s,
            self.wait_p99_s,
        )

    def judged(self, include_warmup: bool) -> Window:
        """The figures a candidate is judged on: steady state unless asked otherwise (or no
        request arrived after the warm-up)."""
        if include_warmup or self.steady is None or self.steady.requests == 0:
            return self.whole
        return self.steady


def route(instances: list[Instance], model: int, t: float) -> Instance:
    """The instance that gets a request for `model` at `t`, by the live gateway's rule
    (`mme_local.routing`), from each instance's state at `t`."""
    for inst in instances:
        inst.advance(t)
    chosen = shared_route(
        range(len(instances)),
        holds=lambda i: instances[i].holds(model),
        busy=lambda i: instances[i].busy(model, t),
        memory_held=lambda i: instances[i].memory_held,
        free_order=lambda i: instances[i].busy_until.get(model, 0.0),
    )
    return instances[chosen]


def _percentiles(waits: npt.NDArray[np.float64]) -> tuple[float, float]:
    if not len(waits):
        return 0.0, 0.0
    p50, p99 = np.percentile(waits, [50, 99])
    return float(p50), float(p99)


def build_instances(
    workload: Workload,
    costs: ModelCosts,
    config: SimConfig,
    answer: Callable[[int, float | None, int], None],
    first_loaded: dict[int, float] | None = None,
) -> list[Instance]:
    """`config.count` instances that tell `answer` how each request ended (index, wait or
    None for a 429, outcome); replays take the recorded loads, unloads and ends too."""
    recorded = workload if config.recorded_cold_starts else None
    return [
        Instance(config, costs, answer, first_loaded, index=k, recorded=recorded)
        for k in range(config.count)
    ]


def feed(
    instances: list[Instance],
    workload: Workload,
    costs: ModelCosts,
    config: SimConfig,
    before: Callable[[float], None] | None = None,
) -> None:
    """Send the workload's requests, in order, each to the instance the live gateway's rule
    picks. `before(t)` runs ahead of each arrival (the HTML timeline closes its intervals
    there). The instances are left at the last arrival: `advance(inf)` runs them out."""
    service = workload.service_s
    latency = costs.latency_s
    times, models = workload.times, workload.models
    cold = workload.cold_work_s if config.recorded_cold_starts else None
    only = instances[0] if config.count == 1 else None
    for i in range(len(times)):
        model, t = models[i], times[i]
        if before is not None:
            before(t)
        inst = only if only is not None else route(instances, model, t)
        inst.request(
            i, t, model, service[i] if service else latency[model], cold[i] if cold else None
        )


def simulate(workload: Workload, costs: ModelCosts, config: SimConfig) -> SimResult:
    """Replay `workload` on `config.count` instances; counts, waits and peaks."""
    n = len(workload)
    # A list and a bytearray, made arrays at the end: setting an item costs a third of what
    # it costs in a numpy array, and every request sets two.
    answered_waits = [0.0] * n
    answered_how = bytearray(n)
    timeout = config.ready_timeout_s

    def answer(index: int, wait: float | None, kind: int) -> None:
        answered_waits[index] = timeout if wait is None else wait
        answered_how[index] = kind

    first_loaded: dict[int, float] = {}
    instances = build_instances(workload, costs, config, answer, first_loaded)
    feed(instances, workload, costs, config)
    for inst in instances:
        inst.advance(float("inf"))
    times, models = workload.times, workload.models
    waits = np.array(answered_waits, dtype=np.float64)
    outcome = np.frombuffer(answered_how, dtype=np.int8)
    machines = [inst.machine for inst in instances]
    p50, p99 = _percentiles(waits)
    warm_end = _warmup_end(instances, first_loaded, len(set(models)))
    start = times[0] if times else 0.0
    steady = None
    warmup_requests = n
    if warm_end is not None:
        warmup_requests = bisect_left(times, warm_end)
        steady = _window(
            waits[warmup_requests:],
            outcome[warmup_requests:],
            sum(len(i.load_times) - bisect_right(i.load_times, warm_end) for i in instances),
            times[-1] - warm_end if times else 0.0,
        )
    return SimResult(
        requests=n,
        hits=sum(m.hits for m in machines),
        not_ready=sum(i.not_ready for i in instances),
        loads=sum(m.loads for m in machines),
        unloads=sum(m.unloads for m in machines),
        downloads=sum(m.downloads for m in machines),
        deletions=sum(m.deletions for m in machines),
        over_budget_loads=sum(m.over_budget_loads for m in machines),
        duration_s=workload.duration_s,
        wait_p50_s=p50,
        wait_p99_s=p99,
        peak_host_bytes=max(i.peak_host for i in instances),
        peak_gpu_bytes=max(i.peak_gpu for i in instances)
        if config.base_gpu_bytes is not None
        else None,
        errors=sum(i.errors for i in instances),
        rejected_loads=sum(i.rejected_loads for i in instances),
        warmup_s=None if warm_end is None else warm_end - start,
        warmup_requests=warmup_requests,
        steady=steady,
    )


def _warmup_end(
    instances: list[Instance], first_loaded: dict[int, float], distinct: int
) -> float | None:
    ends = [i.first_eviction for i in instances if i.first_eviction is not None]
    if len(first_loaded) >= distinct and first_loaded:
        ends.append(max(first_loaded.values()))
    return min(ends, default=None)


def _window(
    waits: npt.NDArray[np.float64], outcome: npt.NDArray[np.int8], loads: int, duration: float
) -> Window:
    counts = np.bincount(outcome, minlength=5)
    p50, p99 = _percentiles(waits)
    return Window(
        requests=len(waits),
        hits=int(counts[HIT] + counts[HIT_TIMED_OUT]),
        not_ready=int(counts[NOT_READY]),
        errors=int(counts[ERROR] + counts[HIT_TIMED_OUT]),
        loads=loads,
        duration_s=duration,
        wait_p50_s=p50,
        wait_p99_s=p99,
    )
