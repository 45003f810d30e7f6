"""Does the capacity simulator predict a real run? The demo's workload, recorded and replayed.

Packages all-MiniLM-L6-v2, publishes it under --models names, profiles the prefix (one
distinct artifact), then serves the demo's Zipf workload twice on the real Triton with a trace:
once under a count budget, once under a measured-memory budget. Each trace is replayed by
`capacity plan` with the same budget; the table compares measured and predicted counts.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.results import append_result
from mme_local.capacity.api import EmulatorBudgets, PlanRequest, make_plan, profile_artifacts
from mme_local.capacity.profile import Profile
from mme_local.capacity.profiler import Sample
from mme_local.capacity.workload import zipf_sequence

KEYS = ("hits", "loads", "unloads", "downloads")


def _serve(
    settings: Any, archive: Path, names: list[str], sequence: list[int], body: bytes
) -> dict[str, int]:
    from mme_local.artifacts.upload import upload_with_progress
    from mme_local.background import RunningEmulator

    with RunningEmulator(settings) as running:
        upload_with_progress(running.s3_client(), running.model_data, [(archive, n) for n in names])
        client = running.runtime_client()
        for model in sequence:
            client.invoke_endpoint(
                EndpointName=running.endpoint_name,
                TargetModel=names[model],
                ContentType="application/octet-stream",
                Body=body,
            )["Body"].read()
        running.settle()
        entries = running.emulator.cache.entries()
        return {
            "hits": int(running.metrics()["mme_model_cache_hit_total"]),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }


def _profile(archive: Path, body: bytes, work: Path) -> Profile:
    from mme_local.settings import EmulatorSettings

    folder = work / "one"
    folder.mkdir()
    (folder / "model-0.tar.gz").symlink_to(archive)
    return profile_artifacts(EmulatorSettings(), folder, Sample(body, repeats=5), print)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--capacity", type=int, default=12)
    parser.add_argument("--memory-models", type=float, default=8.5)
    parser.add_argument("--zipf", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    parser.add_argument("--keep-profile", type=Path, help="also save the profile here")
    parser.add_argument("--keep-traces", type=Path, help="also copy the traces into this folder")
    args = parser.parse_args()

    from mme_local.artifacts.archive import copy_names
    from mme_local.artifacts.package import package
    from mme_local.demo.config import minilm_folder
    from mme_local.demo.encoder import Encoder
    from mme_local.demo.workload import SENTENCES
    from mme_local.settings import EmulatorSettings

    folder = minilm_folder()
    names = copy_names("model-{i}.tar.gz", args.models)
    sequence = zipf_sequence(args.models, args.requests, args.zipf, args.seed).tolist()
    body, _ = Encoder(folder).body(random.Random(0).choice(SENTENCES))
    rows: list[tuple[str, dict[str, int], dict[str, int], float]] = []
    with tempfile.TemporaryDirectory(prefix="mme-capacity-bench-") as scratch:
        work = Path(scratch)
        archive = package(folder, work / "artifact", name_pattern="model.tar.gz").archives[0]
        profile = _profile(archive, body, work)
        footprint = profile.artifacts[0]
        # every copy shares the one profiled footprint
        profile = replace(profile, artifacts=[replace(footprint, target_models=names)])
        profile_path = work / "profile.json"
        profile.save(profile_path)
        if args.keep_profile is not None:
            profile.save(args.keep_profile)
        memory = profile.baseline_host_bytes + int(args.memory_models * footprint.host_memory_bytes)
        runs = [
            (f"max_loaded_models={args.capacity}", {"max_loaded_models": args.capacity}),
            (f"memory_limit={memory >> 20} MiB", {"memory_limit_bytes": memory}),
        ]
        for label, budget in runs:
            trace = work / f"trace-{len(rows)}.jsonl"
            settings = EmulatorSettings(
                port=0, trace_file=trace, cache_dir=work / f"cache-{len(rows)}", **budget
            )
            started = time.perf_counter()
            measured = _serve(settings, archive, names, sequence, body)
            served_s = time.perf_counter() - started
            result = (
                make_plan(
                    PlanRequest(
                        profile=profile_path, trace=trace, budgets=EmulatorBudgets(**budget)
                    )
                )
                .outcomes[0]
                .result
            )
            predicted = {k: getattr(result, k) for k in KEYS}
            if args.keep_traces is not None:
                args.keep_traces.mkdir(parents=True, exist_ok=True)
                shutil.copy(trace, args.keep_traces / trace.name)
            rows.append((label, measured, predicted, served_s))
            print(label, measured, predicted)
    lines = [
        "| budget | " + " | ".join(f"{k} measured / predicted" for k in KEYS) + " |",
        "|---|" + "---:|" * len(KEYS),
    ]
    for label, measured, predicted, _ in rows:
        cells = " | ".join(f"{measured[k]} / {predicted[k]}" for k in KEYS)
        lines.append(f"| {label} | {cells} |")
    lines.append("")
    lines.append(
        f"Profile: MiniLM {footprint.host_memory_bytes >> 20} MiB host raw, "
        f"{profile.stub_host_bytes >> 20} MiB of it the per-stub cost; load "
        f"{footprint.load_s:.2f} s, download {footprint.download_s:.2f} s, unload "
        f"{footprint.unload_s:.2f} s; Triton alone {profile.baseline_host_bytes >> 20} MiB."
    )
    table = "\n".join(lines)
    print(table)
    if args.write:
        append_result(
            "Capacity simulator vs a real run (the demo's workload)",
            f"{args.requests} requests, Zipf {args.zipf}, seed {args.seed}, over {args.models} "
            "MiniLM copies on the embedded Triton, sent one at a time; each run's trace "
            "replayed with `capacity plan` under the same budget.",
            table,
        )


if __name__ == "__main__":
    main()
