"""Triton vs TorchServe behind the same gateway: cold load and warm latency, same MiniLM.

In one run, one stack after the other (never both at once, so neither slows the other):
package all-MiniLM-L6-v2 for the stack (`bert-torchscript` or `bert-torchserve`: the same
traced model.pt), start `up`'s endpoint with that stack, publish N copies, then
- cold: the first InvokeEndpoint of each copy (S3 GET, extraction, load, one answer), and the
  load alone (the cache's `mme_model_loading_time_seconds`);
- warm: R sequential InvokeEndpoint calls on one loaded copy over one kept-alive connection;
- memory: what the cache measured for the loaded model (its Python stub or worker).

    .venv/bin/python bench/stacks.py [--copies 3] [--requests 200] [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402


@dataclass(frozen=True)
class StackResult:
    stack: str
    version: str
    start_s: float
    cold_s: list[float]
    load_s: float
    warm_ms: list[float]
    memory_mib: float


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(stack: str, model_folder: Path, copies: int, requests: int) -> StackResult:
    import httpx

    from mme_local.artifacts.package import package
    from mme_local.artifacts.templates import DEFAULT_TEMPLATE
    from mme_local.background import run_in_thread
    from mme_local.cli.package_request import request_for
    from mme_local.settings import EmulatorSettings

    with tempfile.TemporaryDirectory(prefix=f"bench-{stack}-") as scratch:
        template = DEFAULT_TEMPLATE[stack]
        built = package(model_folder, Path(scratch), template)
        body = json.dumps(request_for(template, model_folder)).encode()
        settings = EmulatorSettings(port=0, stack=stack, cache_dir=Path(scratch) / "cache")
        started = time.perf_counter()
        with run_in_thread(settings) as running:
            start_s = time.perf_counter() - started
            assert running.emulator.server is not None
            version = running.emulator.server.version or "?"
            s3, prefix = running.s3_client(), running.model_data
            names = [f"model-{i}.tar.gz" for i in range(copies)]
            for name in names:
                s3.upload_file(str(built.archives[0]), prefix.bucket, prefix.key_for(name))
            url = f"{running.url}/endpoints/{running.endpoint_name}/invocations"
            cold: list[float] = []
            warm: list[float] = []
            with httpx.Client(timeout=300) as client:

                def invoke(name: str) -> float:
                    sent = time.perf_counter()
                    answer = client.post(
                        url,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Amzn-SageMaker-Target-Model": name,
                        },
                    )
                    elapsed = time.perf_counter() - sent
                    assert answer.status_code == 200, answer.text
                    assert len(json.loads(answer.content)["outputs"]) == 2
                    return elapsed

                for name in names:
                    cold.append(invoke(name))
                for _ in range(requests):
                    warm.append(invoke(names[-1]) * 1000)
            samples = running.metrics()
            loads = samples["mme_model_loading_time_seconds_count"]
            load_s = samples["mme_model_loading_time_seconds_sum"] / loads
            rows = httpx.get(f"{running.url}/_mme/models").json()
            memory = next(r["memory_bytes"] for r in rows if r["target_model"] == names[-1])
    return StackResult(stack, version, start_s, cold, load_s, warm, memory / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="cold loads per stack")
    parser.add_argument("--requests", type=int, default=200, help="warm requests per stack")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.demo.config import minilm_folder

    folder = minilm_folder()
    results = []
    for stack in ("triton", "torchserve"):
        print(f"measuring {stack} ...", file=sys.stderr)
        results.append(measure(stack, folder, args.copies, args.requests))
    lines = [
        "| stack | endpoint start s | cold first call s (median, min-max) | load alone s (mean) "
        "| warm p50 ms | warm p99 ms | model memory MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.stack} {r.version} | {r.start_s:.1f} | {statistics.median(r.cold_s):.2f} "
            f"({min(r.cold_s):.2f}-{max(r.cold_s):.2f}) | {r.load_s:.2f} "
            f"| {statistics.median(r.warm_ms):.1f} | {_percentile(r.warm_ms, 0.99):.1f} "
            f"| {r.memory_mib:.0f} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.write:
        append_result(
            "Stacks: Triton vs TorchServe, same MiniLM",
            f"all-MiniLM-L6-v2 traced to TorchScript, packaged as bert-torchscript (Triton, "
            f"Python-based pytorch backend) and bert-torchserve (TorchServe handler), the same "
            f"request.json (9 tokens); {args.copies} cold first calls and {args.requests} "
            "sequential warm calls per stack through the gateway over one kept-alive "
            "connection; one stack at a time on a CPU-only machine shared with other work.",
            report,
        )


if __name__ == "__main__":
    main()
