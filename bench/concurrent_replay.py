"""Does the capacity simulator predict a run with many clients at once? Recorded and replayed.

Publishes --models copies of a Python-backend model that holds --hold-mib once loaded,
profiles one copy, then serves a Zipf workload from --clients threads at once (each sends its
next request when the last is answered) on the real Triton, under a measured-memory budget
of --fit models with 2 parallel downloads and 2 parallel loads, with a trace. --think and
--stagger space the requests out (a pause before each, the clients' starts apart); the
replay keeps ties in their recorded order either way (recorded ends), so they are a variation,
not a need. The trace is replayed by `capacity plan` with the same budget and parallelism; the
table compares measured and predicted counts. --keep saves the trace and the profile, for
comparing each request's outcome.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.results import append_result
from mme_local.capacity.api import EmulatorBudgets, PlanRequest, make_plan, profile_artifacts
from mme_local.capacity.plan import Parallelism
from mme_local.capacity.profiler import Sample
from mme_local.capacity.workload import zipf_sequence

KEYS = ("hits", "loads", "unloads", "downloads")
PARALLEL = 2


def _client(
    running: Any,
    names: list[str],
    sequence: list[int],
    body: bytes,
    start_s: float,
    think_s: float,
) -> None:
    client = running.runtime_client()
    time.sleep(start_s)
    for model in sequence:
        time.sleep(think_s)
        client.invoke_endpoint(
            EndpointName=running.endpoint_name,
            TargetModel=names[model],
            ContentType="application/octet-stream",
            Body=body,
        )["Body"].read()


def _serve(
    settings: Any,
    names: list[str],
    sequences: list[list[int]],
    body: bytes,
    stagger_s: float,
    think_s: float,
) -> Any:
    from mme_local.background import RunningEmulator

    with RunningEmulator(settings) as running:
        threads = [
            threading.Thread(
                target=_client, args=(running, names, sequence, body, k * stagger_s, think_s)
            )
            for k, sequence in enumerate(sequences)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        running.settle()
        entries = running.emulator.cache.entries()
        return {
            "hits": int(running.metrics()["mme_model_cache_hit_total"]),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=12, help="per client")
    parser.add_argument("--fit", type=float, default=3.5, help="models the budget holds")
    parser.add_argument("--hold-mib", type=int, default=150)
    parser.add_argument("--zipf", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds a client waits before each request"
    )
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="seconds between the clients' starts"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the trace and the profile into this folder"
    )
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.settings import EmulatorSettings
    from tests.support import doubler_archive, kserve_body

    body = kserve_body([1.0])
    with tempfile.TemporaryDirectory(prefix="mme-concurrent-replay-") as scratch:
        work = Path(scratch)
        archive = doubler_archive(work, "doubler.tar.gz", hold_bytes=args.hold_mib << 20)
        folder = work / "copies"
        folder.mkdir()
        names = [f"model-{i}.tar.gz" for i in range(args.models)]
        for name in names:
            shutil.copy(archive, folder / name)
        # the copies have the same bytes: measured once, under every name
        profile = profile_artifacts(EmulatorSettings(), folder, Sample(body, repeats=5), print)
        footprint = profile.artifacts[0]
        budget = profile.baseline_host_bytes + int(args.fit * footprint.host_memory_bytes)
        trace = work / "trace.jsonl"
        settings = EmulatorSettings(
            port=0,
            models_dir=folder,
            cache_dir=work / "cache",
            trace_file=trace,
            memory_limit_bytes=budget,
            max_parallel_downloads=PARALLEL,
            max_parallel_loads=PARALLEL,
        )
        sequences = [
            zipf_sequence(args.models, args.requests, args.zipf, seed=args.seed + k).tolist()
            for k in range(args.clients)
        ]
        measured = _serve(settings, names, sequences, body, args.stagger, args.think)
        profile_file = work / "profile.json"
        profile.save(profile_file)
        result = (
            make_plan(
                PlanRequest(
                    profile=profile_file,
                    trace=trace,
                    budgets=EmulatorBudgets(memory_limit_bytes=budget),
                    parallel=Parallelism(PARALLEL, PARALLEL),
                )
            )
            .outcomes[0]
            .result
        )
        predicted = {key: int(getattr(result, key)) for key in KEYS}
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(trace, args.keep / "trace.jsonl")
            shutil.copy(profile_file, args.keep / "profile.json")

    rows = ["| | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    rows.append("| emulator (measured) | " + " | ".join(str(measured[k]) for k in KEYS) + " |")
    rows.append("| replay (predicted) | " + " | ".join(str(predicted[k]) for k in KEYS) + " |")
    off = [
        f"{abs(predicted[k] - measured[k]) / measured[k]:.1%}" if measured[k] else "-" for k in KEYS
    ]
    rows.append("| difference | " + " | ".join(off) + " |")
    table = "\n".join(rows)
    print(table)
    if args.write:
        about = (
            f"{args.models} copies of a Python-backend model holding {args.hold_mib} MiB "
            f"({footprint.host_memory_bytes / 2**20:.0f} MiB measured), {args.clients} clients "
            f"x {args.requests} requests (Zipf {args.zipf}), memory budget = the server's own "
            f"memory + {args.fit} models, {PARALLEL} parallel downloads and loads; "
            + (
                f"clients start {args.stagger} s apart and wait {args.think} s before each request."
                if args.think or args.stagger
                else "each client sends its next request as soon as the last is answered."
            )
        )
        append_result("Capacity replay under concurrency", about, table)


if __name__ == "__main__":
    main()
