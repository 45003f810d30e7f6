"""How fast the capacity simulator replays a large synthetic workload for one candidate.

Builds a profile-shaped footprint in memory (no emulator needed), draws each case's workload,
then times `simulate` alone and the whole `run_plan` for one instance type, best of --rounds.
Three cases of 1,000,000 requests over 10,000 models: an overloaded instance (most cold
requests answered 429), a skewed workload (Zipf 1.4), and a slow one where about half the
requests are cold loads that the instance keeps up with (the most events per request). Wall
and CPU seconds are both given: on a shared machine the wall time also counts other programs'
turns.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bench.results import append_result
from mme_local.capacity.plan import (
    Candidate,
    Parallelism,
    Targets,
    instance_candidates,
    run_plan,
)
from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.simulator import SimResult, model_costs, simulate
from mme_local.capacity.workload import SyntheticSpec, Workload, synthetic

MiB = 1024**2


def minilm_like_profile() -> Profile:
    """Figures of the MiniLM artifact as the embedded runtime measures it (rounded)."""
    footprint = Footprint(
        sha256="0" * 64,
        target_models=["model-0.tar.gz"],
        platform="pytorch_libtorch",
        archive_bytes=80 * MiB,
        extracted_bytes=91 * MiB,
        download_s=0.6,
        load_s=2.5,
        unload_s=0.3,
        host_memory_bytes=435 * MiB,
        gpu_memory_bytes=None,
        warm_latency_s=0.012,
    )
    return Profile(
        runtime="embedded",
        measured_at="synthetic",
        machine="synthetic",
        baseline_host_bytes=250 * MiB,
        baseline_gpu_bytes=None,
        stub_host_bytes=350 * MiB,
        stub_gpu_bytes=None,
        artifacts=[footprint],
    )


@dataclass(frozen=True)
class Case:
    name: str
    instance: str
    zipf: float
    rate: float


CASES = [
    Case("overloaded", "ml.g4dn.xlarge", 1.0, 200.0),
    Case("skewed", "ml.g5.2xlarge", 1.4, 20.0),
    Case("load-heavy", "ml.g5.2xlarge", 1.0, 3.0),
]


def _plan_result(workload: Workload, profile: Profile, candidate: Candidate) -> SimResult:
    return run_plan(workload, profile, [candidate], Targets(), None).outcomes[0].result


def _best(rounds: int, step: Callable[[], SimResult]) -> tuple[float, float, SimResult]:
    """Best wall and CPU seconds of `rounds` calls of `step`, and its result."""
    walls, cpus = [], []
    result = None
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert result is not None
    return min(walls), min(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--case", action="append", choices=[c.name for c in CASES], help="default: every case"
    )
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    # Over-budget loads log a warning each; the simulator's output is the table.
    logging.disable(logging.WARNING)

    profile = minilm_like_profile()
    rows = [
        "| case | candidate | Zipf | req/s | requests | draw s | simulate s (wall / CPU) | "
        "whole plan s (wall / CPU) | hit ratio | 429s | errors | p99 ms | loads |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        spec = SyntheticSpec(args.models, args.requests, case.zipf, case.rate, seed=1)
        started = time.perf_counter()
        workload = synthetic(spec, profile)
        draw_s = time.perf_counter() - started
        (candidate,) = instance_candidates([case.instance], [1], profile, Parallelism(), 60.0)
        costs = model_costs(workload, profile, cloud=True)
        sim_wall, sim_cpu, result = _best(
            args.rounds, partial(simulate, workload, costs, candidate.config)
        )
        plan_wall, plan_cpu, _ = _best(
            args.rounds, partial(_plan_result, workload, profile, candidate)
        )
        rows.append(
            f"| {case.name} | {case.instance} x1 | {case.zipf:g} | {case.rate:g} "
            f"| {result.requests:,} | {draw_s:.2f} "
            f"| {sim_wall:.2f} / {sim_cpu:.2f} | {plan_wall:.2f} / {plan_cpu:.2f} "
            f"| {result.hit_ratio:.3f} | {result.not_ready:,} | {result.errors:,} "
            f"| {result.wait_p99_s * 1000:,.0f} "
            f"| {result.loads:,} |"
        )
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    table = "\n".join(
        [*rows, "", f"Load average on the machine when the run ended: {load:.1f} (2 cores)."]
    )
    print(table)
    if args.write:
        append_result(
            "Capacity simulator: one candidate over a large synthetic workload",
            f"{args.requests:,} requests over {args.models:,} copies of a MiniLM-sized "
            f"footprint, Poisson arrivals, best of {args.rounds} round(s); target under 10 s.",
            table,
        )


if __name__ == "__main__":
    main()
