"""Cold path: a TargetModel's first invocation vs doing its S3 GET and Triton load by hand.

For each of N copies of a small TorchScript BERT, in the same run and the same Triton:
- baseline: GET the object from the same S3 server, extract it, POST /models to Triton, and
  invoke it once directly (the least any platform must do);
- gateway: the first InvokeEndpoint of another copy through mme-local.

    .venv/bin/python bench/cold_path.py [--models 5] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402


def _body() -> bytes:
    ids = {"name": "INPUT__0", "shape": [1, 8], "datatype": "INT32", "data": list(range(8))}
    mask = {"name": "INPUT__1", "shape": [1, 8], "datatype": "INT32", "data": [1] * 8}
    return json.dumps({"inputs": [ids, mask]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.background import run_in_thread
    from mme_local.cache.extract import extract_stream
    from mme_local.runtime.client import ContainerClient
    from mme_local.settings import EmulatorSettings
    from tests.support import tar_gz, write_tiny_bert_folder

    body = _body()
    baseline: list[float] = []
    gateway: list[float] = []
    with (
        tempfile.TemporaryDirectory() as scratch_name,
        run_in_thread(EmulatorSettings(port=0)) as running,
    ):
        scratch = Path(scratch_name)
        write_tiny_bert_folder(scratch / "bert")
        archive = tar_gz(scratch / "bert", scratch / "bert.tar.gz")
        s3 = running.s3_client()
        prefix = running.model_data
        for i in range(args.models):
            for kind in ("base", "gw"):
                s3.upload_file(str(archive), prefix.bucket, f"{prefix.prefix}{kind}-{i}.tar.gz")
        assert running.emulator.server is not None
        triton_url = running.emulator.server.url
        runtime = running.runtime_client()

        async def by_hand(i: int) -> float:
            client = ContainerClient(triton_url)
            started = time.perf_counter()
            data = s3.get_object(Bucket=prefix.bucket, Key=f"{prefix.prefix}base-{i}.tar.gz")
            folder = scratch / f"base-{i}" / "model"
            folder.parent.mkdir()
            extract_stream(io.BytesIO(data["Body"].read()), folder, 1 << 30)
            await client.load(f"base{i}", str(folder), f"base-{i}.tar.gz")
            await client.invoke(f"base{i}", f"base-{i}.tar.gz", body, "application/json")
            elapsed = time.perf_counter() - started
            await client.unload(f"base{i}", f"base-{i}.tar.gz")
            await client.aclose()
            return elapsed

        for i in range(args.models):
            baseline.append(asyncio.run(by_hand(i)))
            started = time.perf_counter()
            runtime.invoke_endpoint(
                EndpointName="local-mme", TargetModel=f"gw-{i}.tar.gz", Body=body
            )
            gateway.append(time.perf_counter() - started)
            print(f"model {i}: by hand {baseline[-1]:.3f} s, gateway {gateway[-1]:.3f} s",
                  file=sys.stderr)  # fmt: skip

    ratios = [g / b for g, b in zip(gateway, baseline, strict=True)]
    report = "\n".join(
        [
            "| path | median s | min s | max s |",
            "|---|---:|---:|---:|",
            f"| S3 GET + extract + load + invoke, by hand | {statistics.median(baseline):.3f} "
            f"| {min(baseline):.3f} | {max(baseline):.3f} |",
            f"| first InvokeEndpoint through mme-local | {statistics.median(gateway):.3f} "
            f"| {min(gateway):.3f} | {max(gateway):.3f} |",
            f"| **ratio (gateway / by hand)** | **{statistics.median(ratios):.2f}x** "
            f"| {min(ratios):.2f}x | {max(ratios):.2f}x |",
        ]
    )
    print(report)
    if args.write:
        append_result(
            "Cold path: first invocation vs by hand",
            f"{args.models} copies of a tiny TorchScript BERT (`platform: pytorch_libtorch`, "
            "served through the torch host); the baseline does the same GET, extraction, "
            "load and one invoke directly against the same S3 server and Triton.",
            report,
        )


if __name__ == "__main__":
    main()
