"""A hot model stalls while Triton's SageMaker front end loads or unloads another model.

One hot model is invoked at a steady rate over one keep-alive connection (a separate process,
each request timed from when it was due) in four phases of `--seconds` each: straight to
Triton's SageMaker port, quiet and while another model is loaded and unloaded over that port;
then through the mme-local gateway, quiet and while requests for two other models make the
cache load one and evict the other (`max_loaded_models` = 2), the last twice: with
`--unload-blocks-invokes` off, then on (Triton 25.11's model-list mutex played by the
gateway, so every hot request waits while a model unloads). Loads and unloads are `--gap`
seconds apart. Each is timed, and split where the probe model's `initialize()` / `finalize()`
ran (they record the time; `initialize()` also sleeps `--init-sleep`), which shows where a
Python-backend unload's 2 s go. A load or unload counts as stalling the hot model when a hot
request overlapping it took at least half as long as it did.

    .venv/bin/python bench/triton_stall.py [--seconds 20] [--rate 20] [--gap 2] [--write]

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402

BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()
HOT = "hot.tar.gz"
PROBE = "stall-probe.tar.gz"
TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"

# A Python-backend model that only sleeps in initialize() and records when initialize() and
# finalize() ran, so a load's and an unload's time can be split at those moments.
PROBE_MODEL = """\
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _mark(what):
    with open({marks!r}, "a") as handle:
        handle.write(f"{{what}} {{time.time()}}\\n")


class TritonPythonModel:
    def initialize(self, args):
        _mark("initialize")
        time.sleep({init_sleep})

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("y", np.zeros(1, dtype=np.float32))]
            )
            for _ in requests
        ]

    def finalize(self):
        _mark("finalize")
"""
PROBE_CONFIG = """\
backend: "python"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""


# ----- the hot loop (runs in a child process) ---------------------------------------------


async def _hot_loop(
    url: str, headers: dict[str, str], seconds: float, rate: float
) -> list[list[float]]:
    """Requests at a steady `rate` over one keep-alive connection (as a pool holds one), each
    timed from when it was due, so a stalled request also delays the ones queued behind it
    (no coordinated omission)."""
    import aiohttp

    samples: list[list[float]] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm-up
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
        due = time.time()
        deadline = due + seconds
        while due < deadline:
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            samples.append([due, time.time() - due])
            due += 1.0 / rate
    return samples


def client_main(spec: str) -> None:
    job = json.loads(spec)
    samples = asyncio.run(_hot_loop(job["url"], job["headers"], job["seconds"], job["rate"]))
    print(json.dumps(samples))


def _start_hot_loop(url: str, seconds: float, rate: float) -> subprocess.Popen[str]:
    job = {"url": url, "headers": {TARGET_HEADER: HOT}, "seconds": seconds, "rate": rate}
    return subprocess.Popen(
        [sys.executable, __file__, "--client", json.dumps(job)], stdout=subprocess.PIPE, text=True
    )


def _samples(process: subprocess.Popen[str]) -> list[tuple[float, float]]:
    output, _ = process.communicate()
    assert process.returncode == 0, process.returncode
    return [(start, latency) for start, latency in json.loads(output)]


# ----- what happened ----------------------------------------------------------------------


@dataclass
class Transition:
    kind: str
    """"load" or "unload"."""
    start: float
    end: float
    marked: float | None = None
    """When the probe's initialize() (load) or finalize() (unload) ran, if it did."""


@dataclass
class Phase:
    label: str
    samples: list[tuple[float, float]]
    transitions: list[Transition] = field(default_factory=list)

    def latencies_ms(self) -> list[float]:
        return sorted(1000 * latency for _, latency in self.samples)

    def stalled(self, kind: str) -> tuple[int, int]:
        """(transitions of `kind` that stalled the hot model, transitions of `kind`)."""
        of_kind = [t for t in self.transitions if t.kind == kind]
        stalled = 0
        for transition in of_kind:
            overlapping = [
                latency
                for start, latency in self.samples
                if start < transition.end and start + latency > transition.start
            ]
            if overlapping and max(overlapping) >= 0.5 * (transition.end - transition.start):
                stalled += 1
        return stalled, len(of_kind)


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _marks(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(what, float(at)) for what, at in rows]


def _attach_marks(transitions: list[Transition], marks: list[tuple[str, float]]) -> None:
    for transition in transitions:
        what = "initialize" if transition.kind == "load" else "finalize"
        inside = [at for name, at in marks if name == what and transition.start <= at]
        inside = [at for at in inside if at <= transition.end]
        transition.marked = inside[0] if inside else None


# ----- the churn --------------------------------------------------------------------------


def _churn_direct(
    triton_url: str, probe_url: str, deadline: float, gap_s: float
) -> list[Transition]:
    """Load and unload the probe over Triton's SageMaker port, each call on a new connection
    (as a platform's control calls arrive)."""
    import httpx

    transitions: list[Transition] = []
    headers = {TARGET_HEADER: PROBE}
    body = {"model_name": "stallprobe", "url": probe_url}
    while time.time() < deadline:
        started = time.time()
        response = httpx.post(f"{triton_url}/models", json=body, headers=headers, timeout=120)
        assert response.status_code == 200, response.text
        transitions.append(Transition("load", started, time.time()))
        time.sleep(gap_s)
        started = time.time()
        response = httpx.delete(f"{triton_url}/models/stallprobe", headers=headers, timeout=120)
        assert response.status_code == 200, response.text
        transitions.append(Transition("unload", started, time.time()))
        time.sleep(gap_s)
    return transitions


def _churn_gateway(
    invoke: Callable[[str], None], deadline: float, gap_s: float
) -> list[Transition]:
    """Alternate two cold models: each request loads one and (max_loaded_models = 2) evicts
    the other. Transitions are taken from the cache's own timings afterwards."""
    names = ("probe-a.tar.gz", "probe-b.tar.gz")
    index = 0
    while time.time() < deadline:
        invoke(names[index % 2])
        index += 1
        time.sleep(gap_s)
    return []


def _run_phase(
    label: str,
    url: str,
    seconds: float,
    rate: float,
    churn: Callable[[float], list[Transition]] | None,
) -> Phase:
    hot = _start_hot_loop(url, seconds, rate)
    time.sleep(1.0)  # the child's start and warm-up
    transitions: list[Transition] = []
    if churn is not None:
        transitions = churn(time.time() + seconds - 2.5)
    samples = _samples(hot)
    print(f"{label}: {len(samples)} hot requests", file=sys.stderr)
    return Phase(label, samples, transitions)


def _gateway_counts(metrics_url: str) -> dict[str, float]:
    import httpx

    from mme_local.metrics_reader import read_samples

    samples = read_samples(httpx.get(metrics_url).text)
    names = (
        "mme_invocations_total",
        "mme_invocations_during_load_or_unload_total",
        "mme_model_latency_during_load_or_unload_seconds_sum",
        "mme_model_loading_time_seconds_count",
        "mme_model_unloading_time_seconds_count",
        "mme_invocations_held_by_unload_total",
        "mme_invocation_unload_hold_seconds_sum",
    )
    return {name: samples.get(name, 0.0) for name in names}


@dataclass
class GatewayChurn:
    """One gateway phase with loads and evictions, and what the gateway's counters did."""

    phase: Phase
    before: dict[str, float]
    after: dict[str, float]

    def rise(self, name: str) -> float:
        return self.after[name] - self.before[name]


def _gateway_churn(
    scratch: Path, archives: dict[str, Path], label: str, switch: str, args: argparse.Namespace
) -> GatewayChurn:
    """A fresh endpoint (`max_loaded_models` = 2, `unload_blocks_invokes` = `switch`) with the
    hot model loaded, its hot loop running while two other models take turns."""
    from mme_local.background import run_in_thread
    from mme_local.settings import EmulatorSettings

    settings = EmulatorSettings(
        port=0,
        max_loaded_models=2,
        cache_dir=scratch / f"cache-{switch}",
        unload_blocks_invokes=switch,
    )
    with run_in_thread(settings) as running:
        s3 = running.s3_client()
        for name, archive in archives.items():
            s3.upload_file(
                str(archive), running.model_data.bucket, running.model_data.prefix + name
            )
        runtime = running.runtime_client()

        def invoke(target: str) -> None:
            runtime.invoke_endpoint(EndpointName="local-mme", TargetModel=target, Body=BODY)

        invoke(HOT)
        gateway_url = f"{running.url}/endpoints/local-mme/invocations"
        before = _gateway_counts(f"{running.url}/metrics")
        phase = _run_phase(
            label,
            gateway_url,
            args.seconds,
            args.rate,
            lambda deadline: _churn_gateway(invoke, deadline, args.gap),
        )
        return GatewayChurn(phase, before, _gateway_counts(f"{running.url}/metrics"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="hot requests per second")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between transitions")
    parser.add_argument("--init-sleep", type=float, default=0.5, help="the probe's initialize()")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client)
        return

    from mme_local.background import run_in_thread
    from mme_local.cache.layout import model_hash
    from mme_local.settings import EmulatorSettings
    from tests.support import doubler_archive, tar_gz

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        marks = scratch / "marks.txt"
        probe_url = scratch / "probe-url"
        probe = probe_url / "probe"
        (probe / "1").mkdir(parents=True)
        (probe / "config.pbtxt").write_text(PROBE_CONFIG)
        (probe / "1" / "model.py").write_text(
            PROBE_MODEL.format(marks=str(marks), init_sleep=args.init_sleep)
        )
        archive = tar_gz(probe, scratch / "probe.tar.gz")
        archives = {
            HOT: doubler_archive(scratch, HOT),
            "probe-a.tar.gz": archive,
            "probe-b.tar.gz": archive,
        }
        settings = EmulatorSettings(port=0, max_loaded_models=2, cache_dir=scratch / "cache")
        with run_in_thread(settings) as running:
            s3 = running.s3_client()
            s3.upload_file(
                str(archives[HOT]), running.model_data.bucket, running.model_data.prefix + HOT
            )
            runtime = running.runtime_client()
            # Loaded through the cache, so the direct phases find it in Triton.
            runtime.invoke_endpoint(EndpointName="local-mme", TargetModel=HOT, Body=BODY)
            assert running.emulator.server is not None
            triton_url = running.emulator.server.url
            direct_url = f"{triton_url}/models/{model_hash(HOT)}/invoke"
            gateway_url = f"{running.url}/endpoints/local-mme/invocations"
            version = running.emulator.server.version or "(version unknown)"

            phases = [_run_phase("direct, quiet", direct_url, args.seconds, args.rate, None)]
            phases.append(
                _run_phase(
                    "direct, another model loading/unloading",
                    direct_url,
                    args.seconds,
                    args.rate,
                    lambda deadline: _churn_direct(triton_url, str(probe_url), deadline, args.gap),
                )
            )
            _attach_marks(phases[-1].transitions, _marks(marks))
            phases.append(_run_phase("gateway, quiet", gateway_url, args.seconds, args.rate, None))
        churns = [
            _gateway_churn(scratch, archives, label, switch, args)
            for label, switch in (
                ("gateway, cache loading/evicting others", "off"),
                ("gateway, same, unloads blocking invocations (25.11+ mutex played)", "on"),
            )
        ]
        phases += [churn.phase for churn in churns]

    report = _report(phases, churns)
    print(report)
    if args.write:
        append_result(
            "Triton stall: a hot model while another loads or unloads",
            f"{args.seconds:.0f} s per phase; hot model: a Python-backend doubler invoked "
            f"{args.rate:.0f} times a second over one keep-alive connection by a separate "
            "process, each request timed from when it was due; loads/unloads "
            f"{args.gap:.0f} s apart; probe model: Python "
            f"backend, `initialize()` sleeps {args.init_sleep} s; embedded Triton {version}. "
            "A load/unload stalled the hot model when a hot request overlapping it took at "
            "least half as long as it did. The two churned gateway phases each run on a fresh "
            "endpoint (`max_loaded_models` = 2), `--unload-blocks-invokes` off, then on.",
            report,
        )


def _report(phases: list[Phase], churns: list[GatewayChurn]) -> str:
    rows = [
        "| phase | hot requests | p50 ms | p99 ms | max ms | over 100 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for phase in phases:
        ordered = phase.latencies_ms()
        rows.append(
            f"| {phase.label} | {len(ordered)} | {_percentile(ordered, 0.5):.2f} | "
            f"{_percentile(ordered, 0.99):.1f} | {ordered[-1]:.0f} | "
            f"{sum(1 for ms in ordered if ms > 100) / len(ordered):.1%} |"
        )
    churned = phases[1]
    stalled_loads, all_loads = churned.stalled("load")
    stalled_unloads, all_unloads = churned.stalled("unload")
    lines = ["\n".join(rows), ""]
    lines.append(
        f"Straight to Triton: the hot model stalled during {stalled_loads} of {all_loads} loads "
        f"and {stalled_unloads} of {all_unloads} unloads of the probe."
    )
    for kind, mark in (("load", "initialize()"), ("unload", "finalize()")):
        timed = [t for t in churned.transitions if t.kind == kind and t.marked is not None]
        if timed:
            total = statistics.mean(t.end - t.start for t in timed)
            to_mark = statistics.mean(t.marked - t.start for t in timed if t.marked)
            lines.append(
                f"Probe {kind}s over the SageMaker port: {total:.2f} s on average ({len(timed)}); "
                f"{to_mark:.2f} s from the call to {mark}, {total - to_mark:.2f} s from there "
                "to the answer."
            )
    for churn in churns:
        during = churn.rise("mme_invocations_during_load_or_unload_total")
        latency = churn.rise("mme_model_latency_during_load_or_unload_seconds_sum")
        held = churn.rise("mme_invocations_held_by_unload_total")
        hold = churn.rise("mme_invocation_unload_hold_seconds_sum")
        lines.append(
            f"{churn.phase.label}: the cache made "
            f"{churn.rise('mme_model_loading_time_seconds_count'):.0f} loads and "
            f"{churn.rise('mme_model_unloading_time_seconds_count'):.0f} unloads; "
            f"`mme_invocations_during_load_or_unload_total` rose by {during:.0f} of "
            f"{churn.rise('mme_invocations_total'):.0f} invocations, whose ModelLatency "
            f"averaged {1000 * latency / during if during else 0.0:.0f} ms; "
            f"`mme_invocations_held_by_unload_total` rose by {held:.0f}"
            + (f", held {1000 * hold / held:.0f} ms on average." if held else ".")
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
