"""`capacity plan --html`: the plan as one self-contained page, drawn like the live page.

The page holds the candidates (hit ratio and added p99, the chosen one marked), the chosen
candidate's budgets at their peaks, and its timeline: requests by outcome, loaded models and
memory over the workload, with loads and unloads marked. The timeline comes from replaying
the chosen candidate once more, step by step, with the simulator's own instances and
routing; the plan's numbers are not recomputed. Styles, scripts and data are inlined: the
file opens offline, from disk, anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.instance import HIT
from mme_local.capacity.plan import Outcome, Plan
from mme_local.capacity.profile import Profile
from mme_local.capacity.report import plan_dict
from mme_local.capacity.simulator import ModelCosts, build_instances, feed, model_costs
from mme_local.capacity.workload import Workload
from mme_local.gateway.page_assets import inline_page

MAX_BUCKETS = 300
"""Timeline resolution: at most this many intervals over the workload."""


def chosen_outcome(plan: Plan) -> Outcome | None:
    """The cheapest that meets the targets; else the best hit ratio (e.g. unpriced replays)."""
    if plan.cheapest is not None:
        return plan.cheapest
    include = plan.targets.include_warmup
    return max(plan.outcomes, key=lambda o: o.result.judged(include).hit_ratio, default=None)


@dataclass
class _Buckets:
    start: float
    width: float
    count: int
    outcomes: list[list[int]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)

    def index(self, t: float) -> int:
        return min(self.count - 1, int((t - self.start) / self.width))


def replay_timeline(workload: Workload, costs: ModelCosts, outcome: Outcome) -> dict[str, Any]:
    """The chosen candidate's run as timeline samples (seconds from the first request)."""
    config = outcome.candidate.config
    times = workload.times
    start = times[0]
    duration = max(workload.duration_s, 1e-6)
    count = max(1, min(MAX_BUCKETS, len(times)))
    buckets = _Buckets(start, duration / count, count)
    buckets.outcomes = [[0, 0, 0, 0] for _ in range(count)]
    answered: list[float | None] = [None] * len(times)

    def answer(index: int, wait: float | None, how: int) -> None:
        answered[index] = wait
        kind = 2 if wait is None else (0 if how == HIT else 1)
        buckets.outcomes[buckets.index(times[index])][kind] += 1

    instances = build_instances(workload, costs, config, answer)
    peaks = {"loaded": 0, "disk": 0}
    loads_before = unloads_before = 0
    events: list[dict[str, Any]] = []
    boundary = 0

    def close_bucket(b: int) -> None:
        nonlocal loads_before, unloads_before
        end = start + (b + 1) * buckets.width
        for inst in instances:
            inst.advance(end)
        machines = [inst.machine for inst in instances]
        loaded = [m.loaded_count() for m in machines]
        peaks["loaded"] = max(peaks["loaded"], *loaded)
        peaks["disk"] = max(peaks["disk"], *(m.disk_used for m in machines))
        host = [m.host_used for m in machines]
        gpus = [m.gpu_used for m in machines]
        gpu = None if any(g is None for g in gpus) else gpus
        buckets.states.append({"loaded": sum(loaded), "host": max(host), "gpu": gpu})
        loads = sum(m.loads for m in machines)
        unloads = sum(m.unloads for m in machines)
        at = end - start
        if loads > loads_before:
            events.append(_mark(at, "load", f"{loads - loads_before} load(s) in this interval"))
        if unloads > unloads_before:
            reason = f"{unloads - unloads_before} model(s) unloaded to make room"
            events.append(_mark(at, "eviction", reason))
        loads_before, unloads_before = loads, unloads

    def close_until(t: float) -> None:
        nonlocal boundary
        while buckets.index(t) > boundary:
            close_bucket(boundary)
            boundary += 1

    # The simulator's own feed (and routing), so the replay takes the same path as the plan.
    feed(instances, workload, costs, config, before=close_until)
    while boundary < count:
        close_bucket(boundary)
        boundary += 1
    for inst in instances:
        inst.advance(float("inf"))
    # Loads started by the last requests end after the last interval: count them there.
    close_bucket(count - 1)
    buckets.states.pop()

    samples = [
        {
            "at": (b + 1) * buckets.width,
            "hit": o[0],
            "cold": o[1],
            "not_ready": o[2],
            "error": 0,
            "loaded": s["loaded"],
            "host": s["host"],
            "gpu": s["gpu"],
        }
        for b, (o, s) in enumerate(zip(buckets.outcomes, buckets.states, strict=True))
    ]
    return {
        "samples": samples,
        "events": events,
        "start": 0.0,
        "end": duration,
        "period": buckets.width,
        "relative": True,
        "memoryLimit": config.budgets.host_memory_bytes,
        "loads": loads_before,
        "unloads": unloads_before,
        "peak_loaded": peaks["loaded"],
        "peak_disk": peaks["disk"],
    }


def _mark(at: float, kind: str, reason: str) -> dict[str, Any]:
    return {"at": at, "kind": kind, "target_model": None, "reason": reason}


def _budgets(outcome: Outcome, timeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per instance: each budget against its peak in the chosen candidate's run."""
    config, result = outcome.candidate.config, outcome.result
    budgets = config.budgets
    rows: list[dict[str, Any]] = [
        _bar("loaded models (peak)", "count", timeline["peak_loaded"], budgets.max_loaded_models),
        _bar("host memory (peak)", "bytes", result.peak_host_bytes, budgets.host_memory_bytes),
    ]
    if result.peak_gpu_bytes is not None:
        rows.append(
            _bar("GPU memory (peak)", "bytes", result.peak_gpu_bytes, budgets.gpu_memory_bytes)
        )
    rows.append(_bar("disk (peak)", "bytes", timeline["peak_disk"], budgets.disk_bytes))
    return rows


def _bar(name: str, unit: str, used: int, limit: int | None) -> dict[str, Any]:
    return {"name": name, "unit": unit, "used": used, "reserved": None, "limit": limit}


def report_data(plan: Plan, workload: Workload, profile: Profile) -> dict[str, Any]:
    chosen = chosen_outcome(plan)
    data = plan_dict(plan)
    # The page draws each candidate's judged figures (steady state unless --include-warmup).
    for row, outcome in zip(data["candidates"], plan.outcomes, strict=True):
        window = outcome.result.judged(plan.targets.include_warmup)
        row.update(
            hit_ratio=window.hit_ratio,
            wait_p50_s=window.wait_p50_s,
            wait_p99_s=window.wait_p99_s,
            not_ready=window.not_ready,
            errors=window.errors,
            cold_starts_per_hour=window.loads_per_hour,
        )
    data["workload"] = {
        "requests": len(workload),
        "models": len(workload.names),
        "duration_s": workload.duration_s,
    }
    if any(o.price_per_hour is not None and not o.price_verified for o in plan.outcomes):
        data["notes"] = [
            "* unverified price: written from memory, not checked against AWS's pricing page; "
            "give your own with --prices FILE",
            *data["notes"],
        ]
    data["chosen"] = None
    if chosen is not None:
        cloud = chosen.candidate.cloud_footprints
        costs = model_costs(workload, profile, cloud, plan.allowances)
        timeline = replay_timeline(workload, costs, chosen)
        data["chosen"] = {
            "label": chosen.candidate.label,
            "why": "cheapest that meets the targets"
            if chosen is plan.cheapest
            else "no priced candidate meets the targets: the highest hit ratio is shown",
            "timeline": timeline,
            "budgets": _budgets(chosen, timeline),
        }
    return data


def write_html(plan: Plan, workload: Workload, profile: Profile, path: Path) -> None:
    page = inline_page(
        "report.html", ["charts.js", "report.js"], report_data(plan, workload, profile)
    )
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise CapacityError(f"could not write the report to {path}: {error.strerror}") from None
