"""Does the simulator predict a run of several instances? `up --instance-count 2`, recorded and
replayed.

Publishes one tiny Python-backend artifact as six TargetModels, profiles it, then runs the
emulator with two instances (each its own Triton and a count budget of two models) while two
clients send Zipf mixes at once, so that the six models outnumber what one instance holds and
a hot model is sometimes busy on its instance. Each run's trace is replayed by `capacity plan`
with two instances (`--count 2`); the table compares measured and predicted counts, with how
the gateway spread the requests over the two instances.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.results import append_result
from mme_local.capacity.api import EmulatorBudgets, PlanRequest, make_plan, profile_artifacts
from mme_local.capacity.profiler import Sample
from mme_local.capacity.trace import read_trace
from mme_local.capacity.workload import zipf_sequence
from tests.support import doubler_archive, kserve_body

KEYS = ("hits", "loads", "unloads", "downloads")
INSTANCES = 2


def _run(
    copies: Path, work: Path, sequences: list[list[int]], budget: int, gap_s: float
) -> tuple[Path, dict[str, int]]:
    from mme_local.background import RunningEmulator
    from mme_local.settings import EmulatorSettings

    trace = work / "trace.jsonl"
    settings = EmulatorSettings(
        port=0,
        models_dir=copies,
        trace_file=trace,
        cache_dir=work / "cache",
        max_loaded_models=budget,
        instance_count=INSTANCES,
    )
    with RunningEmulator(settings) as running:

        def send(sequence: list[int]) -> None:
            client = running.runtime_client()
            for model in sequence:
                time.sleep(gap_s)
                client.invoke_endpoint(
                    EndpointName=running.endpoint_name,
                    TargetModel=f"model-{model}.tar.gz",
                    Body=kserve_body([1.0]),
                    ContentType="application/octet-stream",
                )["Body"].read()

        with ThreadPoolExecutor(len(sequences)) as pool:
            list(pool.map(send, sequences))
        running.settle()
        entries = [e for m in running.emulator.instances for e in m.cache.entries()]
        measured = {
            "hits": int(running.metrics()["mme_model_cache_hit_total"]),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }
    return trace, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--requests", type=int, default=40, help="per client")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--budget", type=int, default=2, help="max loaded models per instance")
    parser.add_argument("--zipf", type=float, default=0.8)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between a client's calls")
    parser.add_argument("--seeds", default="5,7,9", help="one run per seed")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.settings import EmulatorSettings

    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[str] = []
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="mme-instances-bench-") as scratch:
        work = Path(scratch)
        source = doubler_archive(work, "doubler.tar.gz")
        copies = work / "copies"
        copies.mkdir()
        for i in range(args.models):
            shutil.copy(source, copies / f"model-{i}.tar.gz")
        profile = profile_artifacts(
            EmulatorSettings(), copies, Sample(kserve_body([1.0, 2.0]), repeats=3), print
        )
        profile_path = work / "profile.json"
        profile.save(profile_path)
        for seed in seeds:
            run = work / f"run-{seed}"
            run.mkdir()
            sequences = [
                zipf_sequence(args.models, args.requests, args.zipf, seed=seed + c).tolist()
                for c in range(args.clients)
            ]
            started = time.perf_counter()
            trace, measured = _run(copies, run, sequences, args.budget, args.gap)
            served_s = time.perf_counter() - started
            result = (
                make_plan(
                    PlanRequest(
                        profile=profile_path,
                        trace=trace,
                        budgets=EmulatorBudgets(max_loaded_models=args.budget),
                        counts=(INSTANCES,),
                    )
                )
                .outcomes[0]
                .result
            )
            predicted = {k: getattr(result, k) for k in KEYS}
            answered = [r for r in read_trace(trace) if r.reached_cache]
            by_instance = [sum(r.instance == i for r in answered) for i in range(INSTANCES)]
            for k in KEYS:
                if measured[k]:
                    worst = max(worst, abs(predicted[k] - measured[k]) / measured[k])
            cells = " | ".join(f"{measured[k]} / {predicted[k]}" for k in KEYS)
            rows.append(
                f"| {seed} | {len(answered)} ({by_instance[0]} / {by_instance[1]}) | {cells} "
                f"| {served_s:.0f} s |"
            )
            print(seed, measured, predicted)
    lines = [
        "| seed | requests (instance 0 / 1) | "
        + " | ".join(f"{k} measured / predicted" for k in KEYS)
        + " | run |",
        "|---:|---:|" + "---:|" * len(KEYS) + "---:|",
        *rows,
        "",
        f"Largest difference: {worst:.1%} of the measured count.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        append_result(
            "Capacity simulator vs a real run of two instances",
            f"`up --instance-count {INSTANCES}`, max {args.budget} loaded models per instance, "
            f"{args.models} copies of a Python-backend model; {args.clients} clients at once, "
            f"{args.requests} requests each, Zipf {args.zipf}, {args.gap} s between a client's "
            "calls; each run's trace replayed with `capacity plan --count 2` under the same "
            "budget.",
            table,
        )


if __name__ == "__main__":
    main()
