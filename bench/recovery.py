"""Where a Triton SIGKILL's recovery time goes: each phase time-stamped, kill after kill.

`mme-local up` runs as a subprocess (info log), one model is published to moto and loaded
(after `--idle` others that are never called), and one client thread calls it back to back
(a hot model). Triton is SIGKILLed `--kills` times, `--gap` seconds apart; for each kill the
controller's own log lines (written as each step happens) and the client's calls give:

    kill -> exit noticed -> new process started -> Triton ready -> cache told runtime_up
         -> model load call -> load done -> first 200

The load call's start is its end minus the duration the cache logs with it; runtime_up ->
load call is the wait for the model's next request (the client pauses 5 ms between calls)
plus the cache's own work before the call. Log times have millisecond resolution. The
model's own load time, with no crash around it, is measured too: loads straight to an idle
Triton of the same build, as SageMaker's `serve` starts it and with
`--disable-auto-complete-config` (which skips the Python backend's auto-complete stub).

    .venv/bin/python bench/recovery.py [--kills 3] [--gap 32] [--model doubler|bert] \
        [--idle 0] [--direct-loads 3] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.recovery_phases import (  # noqa: E402
    Kill,
    RecoveryResult,
    attribute,
    first_load,
    read_log,
    render,
)
from bench.results import append_result  # noqa: E402
from bench.soak_controller import Controller, S3Behind  # noqa: E402
from mme_local.runtime import provision  # noqa: E402
from mme_local.runtime.client import ContainerClient  # noqa: E402
from mme_local.runtime.embedded import EmbeddedTriton  # noqa: E402
from mme_local.runtime.errors import ContainerError, RuntimeFailure  # noqa: E402
from mme_local.runtime.triton_config import TritonSettings  # noqa: E402
from tests.support import (  # noqa: E402
    kserve_body,
    tar_gz,
    write_doubler_folder,
    write_tiny_bert_folder,
)

ENDPOINT = "local-mme"
TARGET = "hot.tar.gz"


@dataclass
class Client:
    """One thread calling the hot model back to back, its calls in wall-clock time."""

    url: str
    body: bytes
    calls: list[tuple[float, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _loop(self) -> None:
        headers = {"Content-Type": "application/json", "X-Amzn-SageMaker-Target-Model": TARGET}
        with httpx.Client(base_url=self.url, timeout=70) as client:
            while not self._stop.is_set():
                started = time.time()
                try:
                    status = client.post(
                        f"/endpoints/{ENDPOINT}/invocations", content=self.body, headers=headers
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                self.calls.append((started, time.time(), status))
                time.sleep(0.005)

    def first_200_after(self, moment: float) -> float | None:
        ends = [end for start, end, status in self.calls if start >= moment and status == 200]
        return min(ends) if ends else None


def _model_folder(work: Path, model: str) -> tuple[Path, bytes]:
    """The model's Triton folder under `work` and a request body for it."""
    if model == "doubler":
        folder = work / "doubler-folder" / "doubler"
        write_doubler_folder(folder)
        return folder, kserve_body([1.0, 2.5])
    folder = work / "bert-folder" / "bert"
    write_tiny_bert_folder(folder)
    tensor = {"shape": [1, 8], "datatype": "INT32", "data": [1] * 8}
    inputs = [{"name": f"INPUT__{i}", **tensor} for i in range(2)]
    return folder, json.dumps({"inputs": inputs}).encode()


async def _unless_it_dies(triton: EmbeddedTriton, call: Coroutine[Any, Any, None]) -> None:
    """Await `call`, or raise if Triton dies first: a Triton that dies mid-call can leave the
    connection open (a stub it started holds the socket), so the call alone could hang."""
    answer = asyncio.ensure_future(call)
    ended = asyncio.ensure_future(triton.wait_exit())
    await asyncio.wait({answer, ended}, return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    if not answer.done():
        answer.cancel()
        triton.check_alive()  # raises RuntimeExited with the log's last lines
        raise RuntimeFailure("tritonserver ended during the call")
    answer.result()


async def _direct_loads(folder: Path, count: int, extra_args: tuple[str, ...]) -> list[float]:
    """Seconds per load of `folder` straight to an idle embedded Triton (unloaded between);
    fewer than `count` if Triton fails meanwhile (said on stderr)."""
    triton = EmbeddedTriton(
        provision.ensure(), folder.parent.parent / "direct", TritonSettings(extra_args=extra_args)
    )
    await triton.start()
    client = ContainerClient(triton.url, load_timeout_s=60)
    times: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await _unless_it_dies(triton, client.load("direct", str(folder.parent), "x.tar.gz"))
            times.append(time.perf_counter() - started)
            await _unless_it_dies(triton, client.unload("direct", "x.tar.gz"))
    except (RuntimeFailure, ContainerError) as error:
        print(f"direct loads {' '.join(extra_args)}: {error}", file=sys.stderr)
    finally:
        await client.aclose()
        await triton.stop()
    return times


def _warm(url: str, target: str, body: bytes) -> None:
    answer = httpx.post(
        f"{url}/endpoints/{ENDPOINT}/invocations",
        content=body,
        headers={"Content-Type": "application/json", "X-Amzn-SageMaker-Target-Model": target},
        timeout=120,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"warm-up of {target} got {answer.status_code}: {answer.text}")


def run(model: str, kills: int, gap_s: float, idle: int = 0) -> RecoveryResult:
    """`idle`: other models loaded before the kills but not called (at most 3: the cache
    holds 4)."""
    with tempfile.TemporaryDirectory(prefix="mme-recovery-") as scratch, S3Behind() as s3:
        work = Path(scratch)
        folder, body = _model_folder(work, model)
        others = [f"idle-{n}.tar.gz" for n in range(idle)]
        s3.publish([tar_gz(folder, work / name) for name in [TARGET, *others]])
        assert s3.proxy is not None
        controller = Controller(work, s3.proxy.url, 4, 120.0, log_level="info")
        controller.start()
        client = Client(controller.url, body)
        done: list[Kill] = []
        try:
            for name in [*others, TARGET]:
                _warm(controller.url, name, body)
            client.start()
            for _ in range(kills):
                time.sleep(gap_s)
                pid = controller.triton_pid()
                kill = Kill(time.time())
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 60
                while client.first_200_after(kill.at) is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                first = client.first_200_after(kill.at)
                if first is not None:
                    kill.phases["first 200"] = first
                done.append(kill)
        finally:
            client.stop()
            controller.stop()
        lines = read_log(controller.log_path)
    for index, kill in enumerate(done):
        until = done[index + 1].at if index + 1 < len(done) else float("inf")
        attribute(kill, until, lines, TARGET)
    return RecoveryResult(model, done, first_load(lines, TARGET))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument(
        "--gap",
        type=float,
        default=32.0,
        help="seconds of calls before each kill (over 30 s: a crash after a stable run is "
        "restarted at once, a repeat within 30 s backs off)",
    )
    parser.add_argument("--model", choices=["doubler", "bert"], default="doubler")
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        choices=range(4),
        help="other models loaded before the kills and never called",
    )
    parser.add_argument(
        "--direct-loads", type=int, default=3, help="loads straight to Triton per start mode"
    )
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    result = run(args.model, args.kills, args.gap, args.idle)
    print(render(result), flush=True)  # the slow part's result, before the direct loads
    if args.direct_loads:
        with tempfile.TemporaryDirectory(prefix="mme-recovery-direct-") as scratch:
            folder, _ = _model_folder(Path(scratch), args.model)
            for how, extra in (
                ("as SageMaker's `serve` starts it", ()),
                ("with `--disable-auto-complete-config`", ("--disable-auto-complete-config",)),
            ):
                result.direct[how] = asyncio.run(_direct_loads(folder, args.direct_loads, extra))
        print(render(result))
    table = render(result)
    if args.write:
        kind = (
            "a Python-backend model (y = x * 2)"
            if args.model == "doubler"
            else "a tiny TorchScript BERT on the Python-based pytorch backend"
        )
        append_result(
            "Recovery after a Triton SIGKILL, phase by phase",
            f"`mme-local up` as a subprocess (info log), {kind} loaded and called back to back "
            f"by one client thread ({args.idle} other models loaded, never called); Triton "
            f"SIGKILLed {args.kills} times, {args.gap:.0f} s of "
            "calls apart. Phases from the controller's log (ms resolution) and the client. "
            f"Then the same model folder loaded and unloaded {args.direct_loads} times straight "
            "through the SageMaker port of an idle embedded Triton, started as SageMaker's "
            "`serve` starts it (auto-complete on, the default) and with "
            "`--disable-auto-complete-config`.",
            table,
        )


if __name__ == "__main__":
    main()
