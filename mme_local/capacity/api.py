"""The two capacity commands as library calls: what the CLI and tests call."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.front_end import DEFAULT_STALL_SHARE, DEFAULT_TRITON_VERSION
from mme_local.capacity.memory_model import Allowances
from mme_local.capacity.plan import (
    Candidate,
    Parallelism,
    Plan,
    Targets,
    emulator_candidate,
    instance_candidates,
    run_plan,
)
from mme_local.capacity.prices import load_prices
from mme_local.capacity.profile import Profile, load_profile
from mme_local.capacity.profiler import Sample, measure_footprints
from mme_local.capacity.sources import from_folder, from_prefix
from mme_local.capacity.trace import read_trace_file
from mme_local.capacity.workload import SyntheticSpec, Workload, from_trace, synthetic
from mme_local.settings import EmulatorSettings
from mme_local.store.s3url import S3Prefix
from mme_local.store.source import s3_client

Progress = Callable[[str], None]


def profile_artifacts(
    settings: EmulatorSettings,
    folder: Path | None,
    sample: Sample | None,
    progress: Progress,
) -> Profile:
    """Profile `folder`, or else the prefix `settings` names (on its S3 endpoint)."""
    with tempfile.TemporaryDirectory(prefix="mme-capacity-src-") as work:
        if folder is not None:
            distinct = from_folder(folder)
        else:
            s3 = s3_client(settings.s3_endpoint_url, settings.region)
            prefix = S3Prefix.parse(settings.model_data_url)
            distinct = from_prefix(s3, prefix, Path(work), progress)
        copies = sum(len(d.target_models) for d in distinct)
        progress(f"{copies} artifact(s), {len(distinct)} distinct: measuring each once")
        return asyncio.run(measure_footprints(distinct, settings, sample, progress))


@dataclass(frozen=True)
class EmulatorBudgets:
    """The emulator's budget flags, for a replay in place of instance types."""

    max_loaded_models: int | None = None
    memory_limit_bytes: int | None = None
    disk_limit_bytes: int | None = None

    @property
    def given(self) -> bool:
        return any(
            v is not None
            for v in (self.max_loaded_models, self.memory_limit_bytes, self.disk_limit_bytes)
        )


@dataclass(frozen=True)
class PlanRequest:
    profile: Path
    trace: Path | None = None
    spec: SyntheticSpec | None = None
    instances: list[str] | None = None
    counts: tuple[int, ...] = (1,)
    budgets: EmulatorBudgets = field(default_factory=lambda: EmulatorBudgets())
    targets: Targets = field(default_factory=Targets)
    prices: Path | None = None
    parallel: Parallelism = field(default_factory=Parallelism)
    ready_timeout_s: float = 60.0
    cache_enabled: bool = True
    allowances: Allowances = field(default_factory=Allowances)
    busy_queue: int = 4
    triton_version: str = DEFAULT_TRITON_VERSION
    stall_share: float = DEFAULT_STALL_SHARE


def workload_for(request: PlanRequest, profile: Profile) -> Workload:
    if (request.trace is None) == (request.spec is None):
        raise CapacityError("give either --trace FILE or synthetic traffic (--models N ...)")
    if request.trace is not None:
        trace = read_trace_file(request.trace)
        return from_trace(trace.requests, profile, str(request.trace), trace.control_calls)
    assert request.spec is not None
    return synthetic(request.spec, profile)


def candidates_for(request: PlanRequest, profile: Profile) -> list[Candidate]:
    if request.instances and request.budgets.given:
        raise CapacityError(
            "give --instances or the emulator's budgets "
            "(--max-loaded-models, --memory-limit, --disk-limit), not both"
        )
    if request.budgets.given:
        b = request.budgets
        # One candidate per count: `--count 2` replays a run of `up --instance-count 2`.
        return [
            emulator_candidate(
                profile,
                b.max_loaded_models,
                b.memory_limit_bytes,
                b.disk_limit_bytes,
                request.ready_timeout_s,
                request.cache_enabled,
                request.parallel,
                count=count,
            )
            for count in request.counts
        ]
    if not request.instances:
        raise CapacityError(
            "name candidates with --instances ml.g5.xlarge,... "
            "or replay the emulator's budgets with --max-loaded-models/--memory-limit"
        )
    return instance_candidates(
        request.instances,
        list(request.counts),
        profile,
        request.parallel,
        request.ready_timeout_s,
        request.cache_enabled,
        request.allowances,
        request.busy_queue,
        request.triton_version,
        request.stall_share,
    )


def make_plan(request: PlanRequest) -> Plan:
    profile = load_profile(request.profile)
    workload = workload_for(request, profile)
    candidates = candidates_for(request, profile)
    prices = load_prices(request.prices)
    return run_plan(workload, profile, candidates, request.targets, prices, request.allowances)
