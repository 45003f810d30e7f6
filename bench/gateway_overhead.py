"""Warm-path cost of the gateway: InvokeEndpoint through mme-local vs Triton's SageMaker port.

Both targets serve the same tiny Python-backend model in the same Triton, in the same run.
The load generator runs in its own process (aiohttp, keep-alive) so it doesn't share an
interpreter with the gateway. Rounds alternate direct/gateway to spread out machine noise.

    .venv/bin/python bench/gateway_overhead.py [--requests 2000] [--seconds 10] [--write]

`--write` appends the result, with the machine and the command, to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()


@dataclass
class Target:
    label: str
    url: str
    headers: dict[str, str]


# ----- the load generator (runs in a child process) ---------------------------------------


async def _latency(url: str, headers: dict[str, str], requests: int) -> list[float]:
    import aiohttp

    samples = []
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # warm-up
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
        for _ in range(requests):
            started = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            samples.append(time.perf_counter() - started)
    return samples


async def _throughput(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> float:
    import aiohttp

    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def client_main(spec: str) -> None:
    job = json.loads(spec)
    if job["kind"] == "latency":
        result: object = asyncio.run(_latency(job["url"], job["headers"], job["requests"]))
    else:
        result = asyncio.run(
            _throughput(job["url"], job["headers"], job["concurrency"], job["seconds"])
        )
    print(json.dumps(result))


def _run_client(job: dict[str, object]) -> object:
    output = subprocess.run(
        [sys.executable, __file__, "--client", json.dumps(job)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output)


# ----- the benchmark ----------------------------------------------------------------------


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency round")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client)
        return

    from mme_local.background import run_in_thread
    from mme_local.cache.layout import model_hash
    from mme_local.settings import EmulatorSettings
    from tests.support import doubler_archive

    with (
        tempfile.TemporaryDirectory() as scratch,
        run_in_thread(EmulatorSettings(port=0)) as running,
    ):
        archive = doubler_archive(Path(scratch), "bench.tar.gz")
        running.s3_client().upload_file(
            str(archive), running.model_data.bucket, running.model_data.prefix + "bench.tar.gz"
        )
        # One call loads the model; everything after is the warm path.
        running.runtime_client().invoke_endpoint(
            EndpointName="local-mme", TargetModel="bench.tar.gz", Body=BODY
        )
        assert running.emulator.server is not None
        target_header = {"X-Amzn-SageMaker-Target-Model": "bench.tar.gz"}
        targets = [
            Target(
                "Triton SageMaker port (direct)",
                f"{running.emulator.server.url}/models/{model_hash('bench.tar.gz')}/invoke",
                target_header,
            ),
            Target(
                "mme-local gateway",
                f"{running.url}/endpoints/local-mme/invocations",
                target_header,
            ),
        ]
        latencies: dict[str, list[float]] = {t.label: [] for t in targets}
        throughputs: dict[str, list[float]] = {t.label: [] for t in targets}
        for round_index in range(args.rounds):
            for target in targets:
                samples = _run_client(
                    {"kind": "latency", "url": target.url, "headers": target.headers,
                     "requests": args.requests}
                )  # fmt: skip
                assert isinstance(samples, list)
                latencies[target.label].extend(samples)
                rate = _run_client(
                    {"kind": "throughput", "url": target.url, "headers": target.headers,
                     "concurrency": args.concurrency, "seconds": args.seconds}
                )  # fmt: skip
                assert isinstance(rate, float)
                throughputs[target.label].append(rate)
                print(f"round {round_index + 1}: {target.label}: done", file=sys.stderr)

    direct, gateway = (t.label for t in targets)
    rows = []
    for label in (direct, gateway):
        rows.append(
            (
                label,
                1000 * _percentile(latencies[label], 0.50),
                1000 * _percentile(latencies[label], 0.99),
                statistics.mean(throughputs[label]),
            )
        )
    added_p50 = rows[1][1] - rows[0][1]
    added_p99 = rows[1][2] - rows[0][2]
    ratio = rows[1][3] / rows[0][3]
    table = [
        f"| target | p50 ms (c=1) | p99 ms (c=1) | req/s (c={args.concurrency}) |",
        "|---|---:|---:|---:|",
        *(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:,.0f} |" for r in rows),
        f"| **added by the gateway** | **{added_p50:+.3f}** | **{added_p99:+.3f}** | "
        f"**{ratio:.2f}x** |",
    ]
    report = "\n".join(table)
    print(report)
    if args.write:
        append_result(
            "Warm path: gateway vs Triton direct",
            f"{args.requests} sequential requests per round for latency, {args.seconds:.0f} s "
            f"at concurrency {args.concurrency} for throughput, {args.rounds} rounds alternating "
            "targets; the load generator is a separate aiohttp process.",
            report,
        )


if __name__ == "__main__":
    main()
