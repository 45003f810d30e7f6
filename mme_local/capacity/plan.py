"""Candidates, the sweep over them, and the cheapest one that meets the targets."""

from __future__ import annotations

from dataclasses import dataclass, field

from mme_local.artifacts.rules import MAX_ARCHIVE_BYTES
from mme_local.cache.policy import Budgets
from mme_local.capacity.errors import CapacityError
from mme_local.capacity.front_end import (
    DEFAULT_STALL_SHARE,
    DEFAULT_TRITON_VERSION,
    unload_blocks_invokes,
)
from mme_local.capacity.memory_model import Allowances, instance_memory
from mme_local.capacity.prices import PriceTable
from mme_local.capacity.profile import Profile
from mme_local.capacity.simulator import SimConfig, SimResult, model_costs, simulate
from mme_local.capacity.workload import Workload
from mme_local.instances import DEFAULT_INSTANCE_TYPE, UnknownInstanceType, instance_type


@dataclass(frozen=True)
class Candidate:
    label: str
    config: SimConfig
    instance_type: str | None = None
    """None for the emulator's own budgets."""
    cloud_footprints: bool = True
    """Footprints with the per-stub cost removed (the cloud's), else raw as measured."""


@dataclass(frozen=True)
class Parallelism:
    """Downloads and loads at once per instance; None takes the instance type's vCPUs, as
    the emulator does (for the emulator's budgets: those of ml.g5.xlarge, its default)."""

    downloads: int | None = None
    loads: int | None = None


DEFAULT_MAX_FAILED_SHARE = 0.001
"""At most 0.1% of requests answered 429 or with an error, with or without other targets."""


@dataclass(frozen=True)
class Targets:
    hit_ratio: float | None = None
    p99_s: float | None = None
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE
    """The most requests a candidate may answer with 429 or an error, as a share."""
    include_warmup: bool = False
    """Judge on the whole run, warm-up included, instead of the steady state after it."""

    def met_by(self, result: SimResult) -> bool:
        return not self.missed(result)

    def missed(self, result: SimResult) -> list[str]:
        """Each target the candidate misses, with its figure and the target."""
        window = result.judged(self.include_warmup)
        found = []
        if window.failed_share > self.max_failed_share:
            found.append(
                f"429s and errors {window.failed_share:.2%} of requests > "
                f"{self.max_failed_share:.2%}"
            )
        if self.hit_ratio is not None and window.hit_ratio < self.hit_ratio:
            found.append(f"hit ratio {window.hit_ratio:.3f} < {self.hit_ratio:g}")
        if self.p99_s is not None and window.wait_p99_s > self.p99_s:
            found.append(
                f"added p99 {window.wait_p99_s * 1000:,.0f} ms > {self.p99_s * 1000:,.0f} ms"
            )
        return found


@dataclass(frozen=True)
class Outcome:
    candidate: Candidate
    result: SimResult
    price_per_hour: float | None
    meets: bool
    price_verified: bool = False
    """The price comes from a user's --prices file or a checked table, not from memory."""


@dataclass(frozen=True)
class Plan:
    outcomes: list[Outcome]
    targets: Targets
    prices: PriceTable | None
    notes: list[str] = field(default_factory=list)
    allowances: Allowances = field(default_factory=Allowances)
    """The memory assumptions the instance candidates were simulated with."""

    @property
    def cheapest(self) -> Outcome | None:
        """The lowest-priced candidate that meets the targets (priced ones only)."""
        fitting = [o for o in self.outcomes if o.meets and o.price_per_hour is not None]
        return min(fitting, key=lambda o: o.price_per_hour or 0.0, default=None)


def parse_counts(text: str) -> list[int]:
    """'2', '1..3' or '1,2,4' -> instance counts."""
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split("..", 1))
            counts = list(range(low, high + 1))
        else:
            counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise CapacityError(f"--count {text!r} is not a count like 2, 1..3 or 1,2,4") from None
    if not counts or min(counts) < 1:
        raise CapacityError(f"--count {text!r} must name counts of 1 or more")
    return counts


def instance_candidates(
    names: list[str],
    counts: list[int],
    profile: Profile,
    parallel: Parallelism,
    ready_timeout_s: float,
    cache_enabled: bool = True,
    allowances: Allowances | None = None,
    busy_queue: int = 4,
    triton_version: str = DEFAULT_TRITON_VERSION,
    stall_share: float = DEFAULT_STALL_SHARE,
) -> list[Candidate]:
    """Each instance type x count, with the type's host (less the reserve), GPU and
    instance-storage budgets; a load that doesn't fit fails as the container answers it."""
    allowances = allowances or Allowances()
    unload_blocks = unload_blocks_invokes(triton_version)
    candidates = []
    for name in names:
        try:
            spec = instance_type(name, what="--instances")
        except UnknownInstanceType as error:
            raise CapacityError(str(error)) from None
        memory = instance_memory(spec.host_memory_bytes, spec.gpu_memory_bytes, profile, allowances)
        budgets = Budgets(
            max_loaded_models=None,
            host_memory_bytes=memory.host_budget_bytes,
            disk_bytes=spec.instance_storage_bytes,
            max_archive_bytes=MAX_ARCHIVE_BYTES,
            gpu_memory_bytes=memory.gpu_budget_bytes,
        )
        for count in counts:
            config = SimConfig(
                budgets=budgets,
                count=count,
                base_host_bytes=memory.base_host_bytes,
                base_gpu_bytes=memory.base_gpu_bytes,
                parallel_downloads=parallel.downloads or spec.vcpus,
                parallel_loads=parallel.loads or spec.vcpus,
                ready_timeout_s=ready_timeout_s,
                cache_enabled=cache_enabled,
                out_of_memory=True,
                queueing=True,
                busy_queue=busy_queue,
                unload_blocks_invokes=unload_blocks,
                stall_share=stall_share,
            )
            label = f"{name} x{count}" + ("" if cache_enabled else " (cache disabled)")
            candidates.append(Candidate(label, config, name))
    return candidates


def emulator_candidate(
    profile: Profile,
    max_loaded_models: int | None,
    memory_limit_bytes: int | None,
    disk_limit_bytes: int | None,
    ready_timeout_s: float,
    cache_enabled: bool = True,
    parallel: Parallelism | None = None,
    serial_model_control: bool = True,
    count: int = 1,
) -> Candidate:
    """The emulator's own budgets on `count` instances (each its own budgets, as
    `up --instance-count` runs them), with raw footprints: a replay of `up` (which sends
    Triton its loads and unloads one at a time)."""
    parallel = parallel or Parallelism()
    vcpus = instance_type(DEFAULT_INSTANCE_TYPE).vcpus
    parts = [
        f"max {max_loaded_models} loaded" if max_loaded_models else "",
        f"memory {memory_limit_bytes >> 20} MiB" if memory_limit_bytes else "",
        f"disk {disk_limit_bytes >> 20} MiB" if disk_limit_bytes else "",
    ]
    config = SimConfig(
        budgets=Budgets(
            max_loaded_models=max_loaded_models,
            host_memory_bytes=memory_limit_bytes,
            disk_bytes=disk_limit_bytes,
            max_archive_bytes=MAX_ARCHIVE_BYTES,
        ),
        count=count,
        base_host_bytes=profile.baseline_host_bytes,
        parallel_downloads=parallel.downloads or vcpus,
        parallel_loads=parallel.loads or vcpus,
        ready_timeout_s=ready_timeout_s,
        cache_enabled=cache_enabled,
        recorded_cold_starts=True,
        serial_model_control=serial_model_control,
    )
    label = "emulator (" + ", ".join(p for p in parts if p) + ")"
    if count > 1:
        label += f" x{count}"
    return Candidate(label, config, cloud_footprints=False)


def run_plan(
    workload: Workload,
    profile: Profile,
    candidates: list[Candidate],
    targets: Targets,
    prices: PriceTable | None,
    allowances: Allowances | None = None,
) -> Plan:
    """Simulate every candidate; price it and check it against the targets."""
    if len(workload) == 0:
        raise CapacityError("the workload has no requests")
    allowances = allowances or Allowances()
    costs = {flag: model_costs(workload, profile, flag, allowances) for flag in (True, False)}
    outcomes = []
    for candidate in candidates:
        result = simulate(workload, costs[candidate.cloud_footprints], candidate.config)
        price, verified = None, False
        if prices is not None and candidate.instance_type is not None:
            hourly = prices.hourly(candidate.instance_type)
            price = None if hourly is None else hourly * candidate.config.count
            verified = prices.is_verified(candidate.instance_type)
        outcomes.append(Outcome(candidate, result, price, targets.met_by(result), verified))
    notes = _notes(profile, candidates, allowances, targets, costs[True].gpu_estimated)
    return Plan(outcomes, targets, prices, notes=notes, allowances=allowances)


def _notes(
    profile: Profile,
    candidates: list[Candidate],
    allowances: Allowances,
    targets: Targets,
    gpu_estimated: bool,
) -> list[str]:
    notes = []
    if targets.include_warmup:
        notes.append("candidates are judged on the whole run, warm-up included")
    else:
        notes.append(
            "figures are for the steady state, after the warm-up (until every model that "
            "fits has loaded: each model loaded once, or the first eviction); "
            "--include-warmup judges the whole run"
        )
    notes.append(
        f"a candidate meets the targets only if at most {targets.max_failed_share:.2%} of "
        "requests are answered 429 or with an error (--max-failed-share)"
    )
    corrected = [f for f in profile.artifacts if profile.corrected(f)]
    if any(c.cloud_footprints for c in candidates):
        notes.append(
            "on a GPU instance a KIND_GPU model (Triton's default) holds its weights and "
            "workspace in GPU memory and a host share in host memory; a KIND_CPU model holds "
            "host memory only"
        )
        if corrected:
            notes.append(
                f"host footprints less the per-stub cost ({profile.stub_host_bytes >> 20} MiB, "
                "measured on an empty TorchScript model) for TorchScript artifacts: "
                "SageMaker's libtorch backend has no per-model stub"
            )
        if gpu_estimated:
            notes.append(
                "GPU memory was not measured (no GPU profile): each KIND_GPU model's GPU "
                f"footprint is an estimate, its extracted size plus {_workspace(allowances)} "
                "of workspace (--gpu-workspace; AWS's bert-base benchmark: about 15%), and its "
                f"host share {allowances.host_share_bytes >> 20} MiB (--host-share); a profile "
                "made on a GPU replaces both"
            )
        notes.append(
            f"host budget: the instance's memory less {allowances.host_reserve_bytes >> 20} "
            "MiB for the OS, SageMaker's agents and the container's other processes "
            "(--host-reserve); the model server itself as profiled "
            f"({profile.baseline_host_bytes >> 20} MiB)"
        )
        if profile.baseline_gpu_bytes is None:
            notes.append(
                "GPU memory not available to models (CUDA context, backend, headroom): "
                f"{allowances.gpu_baseline_bytes >> 20} MiB, not measured (--gpu-baseline; "
                "AWS's bert-base benchmark on a T4: about 2.9 GB)"
            )
        notes.append(
            "a load that doesn't fit fails as on SageMaker: the container answers 507, an "
            "idle model is unloaded and the load tried once more, else the request gets "
            "the error"
        )
        loads = sorted({c.config.parallel_loads or 0 for c in candidates if c.cloud_footprints})
        notes.append(
            "loads (and downloads) at once per instance: "
            + ", ".join(str(n) for n in loads)
            + " (its vCPUs, as the emulator; --parallel-loads/--parallel-downloads override)"
        )
        notes.append(
            "a loaded model answers as many requests at once as its config's instance count "
            "(1 where it names none), each in its warm latency; the rest queue, and the "
            "queueing counts in added latency"
        )
        cloud = [c.config for c in candidates if c.cloud_footprints]
        if any(c.unload_blocks_invokes for c in cloud):
            notes.append(
                "Triton 25.11 or later: every invocation waits while any model unloads on its "
                "instance (the SageMaker front end holds its model-list mutex for the unload)"
            )
        share = max(c.stall_share for c in cloud)
        notes.append(
            f"{share:.0%} of the requests that arrive while a load or unload runs on their "
            "instance wait for it (their front-end thread runs it; as measured on the embedded "
            "Triton 2.51, 6 of 7; the platform's connection placement is unknown; "
            "--front-end-stall)"
        )
        busy = sorted({c.config.busy_queue for c in candidates if c.cloud_footprints})
        if any(c.config.count > 1 for c in candidates if c.cloud_footprints):
            notes.append(
                "several instances: a request goes to an instance that has its model loaded "
                f"with fewer than {', '.join(str(b) for b in busy)} requests queued for it "
                "(--busy-queue), else to one without it that has the least model memory in use "
                "(within 5%: the lowest index), as `up --instance-count` routes"
            )
    if any(not c.cloud_footprints for c in candidates):
        notes.append(
            "emulator budgets use raw footprints, as the emulator measures them, and a "
            "recorded trace's own cold-start waits where it has them"
        )
    return notes


def _workspace(allowances: Allowances) -> str:
    parts = []
    if allowances.gpu_workspace_share:
        parts.append(f"{allowances.gpu_workspace_share:.0%}")
    if allowances.gpu_workspace_bytes:
        parts.append(f"{allowances.gpu_workspace_bytes >> 20} MiB")
    return " + ".join(parts) or "nothing"
