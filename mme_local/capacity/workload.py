"""Traffic for the simulator: from a recorded trace, or synthetic from a few numbers.

A workload is columns, not objects, so a million requests cost a few lists: arrival time,
model index and (where known) the model's answer time per request, plus the footprint that
each model index takes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from mme_local.cache.records import LoadRecord, UnloadRecord
from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.trace import TraceRecord


@dataclass(frozen=True)
class Workload:
    times: list[float]
    """Seconds from the first request, non-decreasing."""
    models: list[int]
    """Index into `names` per request."""
    names: list[str]
    footprints: list[Footprint]
    """Per model index."""
    service_s: list[float] | None = None
    """Per request: the model's answer time as recorded; None takes each footprint's warm
    latency."""
    cold_work_s: list[tuple[float, float] | None] | None = None
    """Per request of a recorded run that was a cold start: its model's own (download s,
    load s), without the time queued for them; None for the other requests."""
    loads: dict[tuple[int, int], list[LoadRecord]] | None = None
    """A recorded run's loads: (instance, model index) -> each one in order, its `time` (end)
    counted in seconds from the first request."""
    unloads: dict[tuple[int, int], list[UnloadRecord]] | None = None
    """The same for its unloads."""
    done_at: list[float | None] | None = None
    """Per request of a recorded run: when it let go of its model (seconds from the first
    request; None without a lease or in earlier traces)."""

    @property
    def duration_s(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class SyntheticSpec:
    models: int
    requests: int
    zipf: float | None
    """Popularity exponent; None for uniform traffic."""
    rate_rps: float
    seed: int = 0
    artifact: str | None = None
    """Which profiled artifact every model copies (a TargetModel or sha256); None: the first."""


def from_trace(
    records: list[TraceRecord],
    profile: Profile,
    source: str,
    calls: list[LoadRecord | UnloadRecord] | None = None,
) -> Workload:
    """The trace's requests that reached the cache, each mapped to its profiled footprint."""
    known = profile.by_target_model()
    index: dict[str, int] = {}
    names: list[str] = []
    footprints: list[Footprint] = []
    times: list[float] = []
    models: list[int] = []
    service: list[float] = []
    cold: list[tuple[float, float] | None] = []
    done: list[float | None] = []
    start = next((r.time for r in records if r.reached_cache), 0.0)
    for record in records:
        if not record.reached_cache:
            continue
        model = index.get(record.target_model)
        if model is None:
            footprint = known.get(record.target_model)
            if footprint is None:
                raise CapacityError(
                    f"trace {source} names TargetModel {record.target_model!r}, which the "
                    "profile does not have; profile the prefix that holds it "
                    "(mme-local capacity profile)"
                )
            model = index[record.target_model] = len(names)
            names.append(record.target_model)
            footprints.append(footprint)
        times.append(record.time - start)
        models.append(model)
        service.append(record.model_s)
        cold.append(_own_work(record))
        done.append(None if record.done_s is None else record.time - start + record.done_s)
    if not times:
        raise CapacityError(f"trace {source} has no request that reached a model")
    loads: dict[tuple[int, int], list[LoadRecord]] = {}
    unloads: dict[tuple[int, int], list[UnloadRecord]] = {}
    for call in calls or []:
        moved = replace(call, time=call.time - start)
        if isinstance(moved, UnloadRecord):
            model = index.get(moved.unloaded)
            if model is not None:
                unloads.setdefault((moved.instance, model), []).append(moved)
        else:
            model = index.get(moved.loaded)
            if model is not None:
                loads.setdefault((moved.instance, model), []).append(moved)
    return Workload(
        times,
        models,
        names,
        footprints,
        service_s=service,
        cold_work_s=cold,
        loads=loads or None,
        unloads=unloads or None,
        done_at=done if any(d is not None for d in done) else None,
    )


def _own_work(record: TraceRecord) -> tuple[float, float] | None:
    """A cold start's own download and load; a trace from before they were recorded has
    only the wait, which stands in for the load."""
    if record.cache_hit is not False:
        return None
    if record.load_s is None:
        return 0.0, record.wait_s
    return record.download_s or 0.0, record.load_s


def zipf_sequence(models: int, requests: int, exponent: float, seed: int) -> npt.NDArray[np.int64]:
    """Model index per request; ranks are shuffled so model-0 is not always the most popular.

    Draws the same numbers in the same order as the demo's workload, so a spec with the
    demo's figures names the same models.
    """
    rng = np.random.default_rng(seed)
    weights = np.arange(1, models + 1, dtype=np.float64) ** -exponent
    ranked = rng.permutation(models)
    picks = rng.choice(models, size=requests, p=weights / weights.sum())
    chosen: npt.NDArray[np.int64] = ranked[picks]
    return chosen


def synthetic(spec: SyntheticSpec, profile: Profile) -> Workload:
    """`spec.models` copies of one profiled artifact, Poisson arrivals at `spec.rate_rps`."""
    if spec.models < 1 or spec.requests < 1:
        raise CapacityError("--models and --requests must be at least 1")
    if spec.rate_rps <= 0:
        raise CapacityError("--rate must be more than 0 requests per second")
    footprint = _artifact(profile, spec.artifact)
    if spec.zipf is None:
        picks = np.random.default_rng(spec.seed).integers(0, spec.models, size=spec.requests)
    else:
        picks = zipf_sequence(spec.models, spec.requests, spec.zipf, spec.seed)
    gaps = np.random.default_rng(spec.seed + 1).exponential(1.0 / spec.rate_rps, spec.requests)
    gaps[0] = 0.0
    times = np.cumsum(gaps)
    names = [f"model-{i}.tar.gz" for i in range(spec.models)]
    return Workload(times.tolist(), picks.tolist(), names, [footprint] * spec.models)


def _artifact(profile: Profile, wanted: str | None) -> Footprint:
    if wanted is None:
        return profile.artifacts[0]
    for footprint in profile.artifacts:
        if wanted == footprint.sha256 or wanted in footprint.target_models:
            return footprint
    raise CapacityError(
        f"the profile has no artifact {wanted!r}; name one of its TargetModels or sha256s"
    )
