"""Warm-path cost of the gateway: InvokeEndpoint through mme-local vs Triton's SageMaker port.

Both targets serve the same tiny Python-backend model in the same Triton, in the same run.
The load generator runs in its own process (aiohttp, keep-alive) so it doesn't share an
interpreter with the gateway. Rounds alternate direct/gateway to spread out machine noise.

    .venv/bin/python bench/gateway_overhead.py [--requests 2000] [--seconds 10] [--write]
        [--live-page 1000]

`--write` appends the result, with the machine and the command, to docs/benchmarks.md.
`--live-page N` publishes N more objects (each requested once, so the cache holds N + 1
models; their loads fail, so they stay on disk) and measures the gateway twice more:
with the live page `/_mme/` open in headless Chromium (on the same machine, so the browser's
own CPU counts too), and with only the page's requests sent by a separate polling process (the
gateway's share). Each round starts with the next target; the report adds, for those two, the
difference from the gateway alone in the same round (median and range over rounds), and what
one refresh costs the gateway and the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    page: str | None = None
    """A page to keep open in headless Chromium while this target is measured."""
    page_requests: str | None = None
    """A gateway whose live views a thread polls as the page does, without a browser."""


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
    if job["kind"] == "poll":
        _poll(job["base"])
        return
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


# ----- the live page, open beside the load ------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        sys.exit("--live-page needs chromium (apt-get install chromium)")
    return found


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1400,1200",
]


PAGE_RENDERS: list[tuple[float, int]] = []
"""(ms of the page's last refresh, model rows in its DOM), read each time a page closes."""


@contextlib.contextmanager
def _page_open(url: str) -> Iterator[None]:
    """Headless Chromium showing `url` (it polls until closed)."""
    profile = Path(tempfile.mkdtemp(prefix="mme-bench-chromium-"))
    browser = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)  # the first render
        yield
        port = int((profile / "DevToolsActivePort").read_text().split()[0])
        PAGE_RENDERS.append(asyncio.run(_read_page(port)))
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


async def _read_page(port: int) -> tuple[float, int]:
    """What the open page says of its last refresh, through the DevTools protocol."""
    import aiohttp

    expression = (
        "[Number(document.body.dataset.renderMs),"
        " document.querySelectorAll('tr[data-model]').length]"
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        async with session.ws_connect(pages[0]["webSocketDebuggerUrl"]) as ws:
            await ws.send_json(
                {"id": 1, "method": "Runtime.evaluate",
                 "params": {"expression": expression, "returnByValue": True}}
            )  # fmt: skip
            async for message in ws:
                answer = json.loads(message.data)
                if answer.get("id") == 1:
                    ms, rows = answer["result"]["result"]["value"]
                    return float(ms), int(rows)
    raise RuntimeError("no answer from the page")


def _poll(base: str) -> None:
    """The page's polling without a browser, as its script does it: the state every second
    (asking only for marks it hasn't got), the models every other second; until killed."""
    import httpx

    with httpx.Client() as client:
        tick, last = 0, 0
        while True:
            last = client.get(f"{base}/_mme/live/state?after={last}").json()["last_seq"]
            if tick % 2 == 0:
                client.get(base + "/_mme/live/models").raise_for_status()
            tick += 1
            time.sleep(1.0)


@contextlib.contextmanager
def _page_requests(base: str) -> Iterator[None]:
    """`_poll` in its own process: a poller in the gateway's process would take the gateway's
    interpreter lock and be counted against the page."""
    poller = subprocess.Popen(
        [sys.executable, __file__, "--client", json.dumps({"kind": "poll", "base": base})]
    )
    try:
        time.sleep(1)  # the first answers
        assert poller.poll() is None, "the page's poller died"
        yield
        assert poller.poll() is None, "the page's poller died"
    finally:
        poller.terminate()
        poller.wait(timeout=30)


def _publish_extra(running: Any, count: int) -> None:
    """`count` more objects, each requested once so the cache holds every one of them: each is
    a well-formed archive whose model names a backend Triton lacks, so it is downloaded and
    extracted, its load fails at once, and it stays on disk with its error (the page's rows
    cost the same for any state; an error text makes them the largest a model can have)."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError

    from tests.support import tar_gz_bytes

    s3 = running.s3_client()
    runtime = running.runtime_client()
    names = [f"page/model-{index:04d}.tar.gz" for index in range(count)]
    body = tar_gz_bytes(
        {"m/config.pbtxt": b'backend: "mme_bench_missing"\n', "m/1/placeholder.txt": b"-"}
    )

    def publish_and_request(name: str) -> None:
        s3.put_object(
            Bucket=running.model_data.bucket, Key=running.model_data.prefix + name, Body=body
        )
        with contextlib.suppress(ClientError):
            runtime.invoke_endpoint(EndpointName="local-mme", TargetModel=name, Body=BODY)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(publish_and_request, names))
    known = len(running.emulator.cache.entries())
    assert known == count + 1, f"the cache holds {known} models, not {count + 1}"


def _page_costs(base: str) -> list[str]:
    """What one refresh costs: the gateway's answer times and sizes, the browser's render."""
    import httpx

    lines = []
    with httpx.Client() as client:
        # A refresh in steady state asks only for marks it hasn't got.
        last = client.get(base + "/_mme/live/state").json()["last_seq"]
        for path in (f"/_mme/live/state?after={last}", "/_mme/live/models"):
            client.get(base + path)
            times, size = [], 0
            for _ in range(20):
                started = time.perf_counter()
                size = len(client.get(base + path).content)
                times.append(time.perf_counter() - started)
            lines.append(
                f"`GET {path}`: median {1000 * statistics.median(times):.1f} ms, "
                f"{size / 1024:.0f} KiB"
            )
    ms = [render[0] for render in PAGE_RENDERS]
    rows = PAGE_RENDERS[-1][1] if PAGE_RENDERS else 0
    lines.append(
        f"browser: one refresh renders in {statistics.median(ms) if ms else float('nan'):.1f} ms "
        f"(median of the last refresh before each close; {rows} table rows in the DOM: one "
        "page of the sorted, filtered list)"
    )
    return lines


# ----- the benchmark ----------------------------------------------------------------------


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Rounds = dict[str, list[tuple[list[float], float]]]
"""Per target, per round: the latency samples (c=1) and the throughput (c=concurrency)."""


def _rounds(args: argparse.Namespace, targets: list[Target], results: Rounds) -> None:
    for round_index in range(args.rounds):
        # Each round starts with the next target, so no target always follows the same one.
        shift = round_index % len(targets)
        for target in targets[shift:] + targets[:shift]:
            page: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            if target.page:
                page = _page_open(target.page)
            elif target.page_requests:
                page = _page_requests(target.page_requests)
            with page:
                results[target.label].append(_measure(args, target))
            print(f"round {round_index + 1}: {target.label}: done", file=sys.stderr)


def _measure(args: argparse.Namespace, target: Target) -> tuple[list[float], float]:
    samples = _run_client(
        {"kind": "latency", "url": target.url, "headers": target.headers,
         "requests": args.requests}
    )  # fmt: skip
    assert isinstance(samples, list)
    rate = _run_client(
        {"kind": "throughput", "url": target.url, "headers": target.headers,
         "concurrency": args.concurrency, "seconds": args.seconds}
    )  # fmt: skip
    assert isinstance(rate, float)
    return samples, rate


def _paired(results: Rounds, label: str, baseline: str) -> str:
    """A target against the baseline measured in the same round: the median and range over
    rounds of the p50 and p99 differences and of the throughput ratio."""

    def spread(values: list[float], fmt: str) -> str:
        return (
            f"{format(statistics.median(values), fmt)} "
            f"[{format(min(values), fmt)}, {format(max(values), fmt)}]"
        )

    pairs = list(zip(results[label], results[baseline], strict=True))
    p50 = [1000 * (_percentile(a[0], 0.5) - _percentile(b[0], 0.5)) for a, b in pairs]
    p99 = [1000 * (_percentile(a[0], 0.99) - _percentile(b[0], 0.99)) for a, b in pairs]
    ratio = [a[1] / b[1] for a, b in pairs]
    return f"{spread(p50, '+.3f')} | {spread(p99, '+.3f')} | {spread(ratio, '.2f')}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency round")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    parser.add_argument(
        "--live-page", type=int, metavar="N", help="with /_mme/ open, N more objects listed"
    )
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
        if args.live_page is not None:
            _publish_extra(running, args.live_page)
            targets += [
                Target(
                    "mme-local gateway, live page open",
                    targets[1].url,
                    target_header,
                    page=f"{running.url}/_mme/",
                ),
                Target(
                    "mme-local gateway, the page's requests only (no browser)",
                    targets[1].url,
                    target_header,
                    page_requests=running.url,
                ),
            ]
        results: Rounds = {t.label: [] for t in targets}
        _rounds(args, targets, results)
        page_notes = _page_costs(running.url) if args.live_page is not None else []

    rows = []
    for label in (t.label for t in targets):
        pooled = [sample for samples, _ in results[label] for sample in samples]
        rows.append(
            (
                label,
                1000 * _percentile(pooled, 0.50),
                1000 * _percentile(pooled, 0.99),
                statistics.mean(rate for _, rate in results[label]),
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
    for row, what in zip(rows[2:], ("the open page", "the page's requests"), strict=False):
        table.append(
            f"| **added by {what}** | **{row[1] - rows[1][1]:+.3f}** | "
            f"**{row[2] - rows[1][2]:+.3f}** | **{row[3] / rows[1][3]:.2f}x** |"
        )
    if len(targets) > 2:
        table += [
            "",
            f"Each round against the gateway alone in the same round (median [min, max] over "
            f"{args.rounds} rounds):",
            "",
            "| target | p50 ms (c=1) | p99 ms (c=1) | req/s ratio |",
            "|---|---:|---:|---:|",
            *(
                f"| {t.label} | {_paired(results, t.label, targets[1].label)} |"
                for t in targets[2:]
            ),
        ]
    report = "\n".join(table)
    if page_notes:
        report += "\n\nWith the page open:\n\n" + "\n".join(f"- {n}" for n in page_notes)
    print(report)
    if args.write:
        title = "Warm path: gateway vs Triton direct"
        if args.live_page is not None:
            title += f", live page open ({args.live_page + 1} models in the cache)"
        append_result(
            title,
            f"{args.requests} sequential requests per round for latency, {args.seconds:.0f} s "
            f"at concurrency {args.concurrency} for throughput, {args.rounds} rounds alternating "
            "targets (each round starting with the next one); the load generator is a separate "
            "aiohttp process, and so is the page's poller.",
            report,
        )


if __name__ == "__main__":
    main()
