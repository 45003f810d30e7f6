"""How fast the capacity simulator replays a large synthetic workload for one candidate.

Builds a profile-shaped footprint in memory (no emulator needed), draws the workload, then
times `simulate` alone and the whole `run_plan` for one instance type, best of --rounds.
"""

from __future__ import annotations

import argparse
import time

from bench.results import append_result
from mme_local.capacity.plan import Parallelism, Targets, instance_candidates, run_plan
from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.simulator import model_costs, simulate
from mme_local.capacity.workload import SyntheticSpec, synthetic

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--instance", default="ml.g4dn.xlarge")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    profile = minilm_like_profile()
    spec = SyntheticSpec(args.models, args.requests, args.zipf, args.rate, seed=1)
    started = time.perf_counter()
    workload = synthetic(spec, profile)
    draw_s = time.perf_counter() - started
    (candidate,) = instance_candidates([args.instance], [1], profile, Parallelism(), 60.0)
    costs = model_costs(workload, profile, cloud=True)
    sim_s, plan_s = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        result = simulate(workload, costs, candidate.config)
        sim_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        run_plan(workload, profile, [candidate], Targets(), None)
        plan_s.append(time.perf_counter() - started)
    table = "\n".join(
        [
            "| step | seconds (best of rounds) |",
            "|---|---:|",
            f"| draw the workload ({args.requests:,} requests, {args.models:,} models) | "
            f"{draw_s:.2f} |",
            f"| simulate one candidate ({args.instance} x1) | {min(sim_s):.2f} |",
            f"| whole plan for that candidate (costs, simulation, percentiles) | "
            f"{min(plan_s):.2f} |",
            "",
            f"Result: hit ratio {result.hit_ratio:.3f}, {result.loads:,} loads, "
            f"{result.unloads:,} unloads, {result.downloads:,} downloads, "
            f"{result.deletions:,} deletions from disk.",
        ]
    )
    print(table)
    if args.write:
        append_result(
            "Capacity simulator: one candidate over a large synthetic workload",
            f"Zipf {args.zipf}, {args.rate:g} req/s, a MiniLM-sized footprint; "
            f"best of {args.rounds} rounds; target under 10 s.",
            table,
        )


if __name__ == "__main__":
    main()
