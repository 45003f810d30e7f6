"""Scale: many TargetModels under one prefix, many loads over time with eviction.

Publishes N small Python-backend models, then invokes a stream of them with a small capacity
so that models load and unload all the time. Reports, at checkpoints: loads, unloads, the
gateway process's RSS, and the number of Python-backend stub processes next to the number of
loaded models (a stub outliving its model would show as more stubs than models).

    .venv/bin/python bench/scale.py [--objects 1000] [--invocations 150] [--capacity 8] [--write]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--invocations", type=int, default=150)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.background import run_in_thread
    from mme_local.runtime.procs import command_line
    from mme_local.settings import EmulatorSettings
    from tests.support import doubler_archive, kserve_body

    rows: list[str] = []
    settings = EmulatorSettings(port=0, max_loaded_models=args.capacity)
    with tempfile.TemporaryDirectory() as scratch, run_in_thread(settings) as running:
        archive = doubler_archive(Path(scratch), "model.tar.gz")
        s3 = running.s3_client()
        started = time.perf_counter()
        for i in range(args.objects):
            s3.upload_file(
                str(archive), running.model_data.bucket, f"{running.model_data.prefix}m-{i}.tar.gz"
            )
        publish_s = time.perf_counter() - started
        listed = len(
            running.s3_client().list_objects_v2(Bucket=running.model_data.bucket)["Contents"]
        )
        server = running.emulator.server
        assert server is not None
        client = running.runtime_client(read_timeout=120)
        rng = random.Random(1)
        # Distinct models, mostly: every invocation is a cold start, so loads never stop.
        targets = rng.sample(range(args.objects), min(args.invocations, args.objects))
        rss_start = _rss_mib()
        started = time.perf_counter()
        for count, index in enumerate(targets, start=1):
            client.invoke_endpoint(
                EndpointName="local-mme", TargetModel=f"m-{index}.tar.gz", Body=kserve_body([1.0])
            )
            if count % max(1, len(targets) // 5) == 0 or count == len(targets):
                running.settle()
                metrics = running.metrics()
                stubs = [
                    pid
                    for pid in server.process_ids()
                    if any("triton_python_backend_stub" in part for part in command_line(pid))
                ]
                rows.append(
                    f"| {count} | {metrics['mme_model_loading_time_seconds_count']:.0f} "
                    f"| {metrics['mme_model_unloading_time_seconds_count']:.0f} "
                    f"| {metrics['mme_loaded_model_count']:.0f} | {len(stubs)} "
                    f"| {_rss_mib():.0f} |"
                )
                print(rows[-1], file=sys.stderr)
        workload_s = time.perf_counter() - started

    report = "\n".join(
        [
            "| invocations | loads | unloads | loaded | stub processes "
            "| RSS MiB of the process running the gateway |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| 0 | 0 | 0 | 0 | 0 | {rss_start:.0f} |",
            *rows,
        ]
    )
    summary = (
        f"{args.objects} objects published in {publish_s:.0f} s ({listed} listed under the "
        f"prefix, listing capped at 1,000 per page); {len(targets)} cold invocations with capacity "
        f"{args.capacity} took {workload_s:.0f} s ({workload_s / len(targets):.2f} s each)."
    )
    print(report)
    print(summary)
    if args.write:
        append_result(
            "Scale: many TargetModels, constant eviction",
            summary,
            report,
        )


if __name__ == "__main__":
    main()
