"""The fault soak: churn, a Triton SIGKILL, an S3 outage and hostile requests, all at once.

K small Python-backend models, each answering with its own factor, under a cache holding fewer
than K; C client threads, a quarter of them calling the cold models one after another (0.5 s
apart), the rest the two hot models at a steady rate. During the run: Triton is
SIGKILLed once, S3 is unreachable for a while (a proxy between the controller and moto resets
every connection), and a thread sends mid-body hang-ups and malformed requests. Every non-200 is
classified by whether it overlaps a fault window (kill → first 200 + 1 s; outage + 2 s). The
recovery is reported twice: kill → the gateway's /ping answering 200 again (the supervisor
noticed and Triton restarted) and kill → the first 200 to a client (that plus the model's
reload, which a Python-backend model spends mostly starting its stub).

    .venv/bin/python bench/soak.py [--duration 120] [--clients 8] [--models 12] \
        [--capacity 4] [--outage 10] [--hot-rate 20] [--write]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402
from bench.soak_controller import Controller, S3Behind  # noqa: E402
from bench.soak_report import SoakResult, Window, render  # noqa: E402
from bench.soak_traffic import Call, Models, Traffic, invoke  # noqa: E402
from mme_local.metrics_reader import read_samples  # noqa: E402
from tests.support import doubler_archive  # noqa: E402

ENDPOINT = "local-mme"
RECOVERY_MARGIN_S = 1.0
OUTAGE_MARGIN_S = 2.0
LAG_MAX = "mme_event_loop_lag_max_seconds"


@dataclass(frozen=True)
class SoakConfig:
    duration_s: float = 120.0
    clients: int = 8
    models: int = 12
    capacity: int = 4
    outage_s: float = 10.0
    hot_rate: float = 20.0
    """Calls per second of each hot-model client."""
    kill_at: float = 0.15
    """When Triton is killed, as a fraction of the run."""
    outage_at: float = 0.4
    """When the S3 outage begins, as a fraction of the run."""
    ready_timeout_s: float = 50.0
    """Far above a tiny model's load time, so a 429 outside a fault window is an error."""


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def _loads(client: httpx.Client, targets: list[str]) -> int:
    """How many times the cache has loaded these TargetModels so far."""
    rows = client.get("/_mme/models").json()
    return sum(int(row["loads"]) for row in rows if row["target_model"] in targets)


def _ping_back(client: httpx.Client, deadline: float) -> float | None:
    """When the gateway's /ping answers 200 again after the kill (Triton restarted), polled
    every 10 ms; None if not before `deadline`. A 200 may come before the gateway has even
    noticed the kill, so it waits for a 503 first, for at most a second."""
    saw_down = False
    give_up_on_down = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        status = client.get("/ping").status_code
        if status != 200:
            saw_down = True
        elif saw_down or time.monotonic() > give_up_on_down:
            return time.monotonic()
        time.sleep(0.01)
    return None


def run_soak(config: SoakConfig) -> SoakResult:
    with tempfile.TemporaryDirectory(prefix="mme-soak-") as scratch, S3Behind() as s3:
        work = Path(scratch)
        names = [f"model-{i}.tar.gz" for i in range(config.models)]
        fresh = ["fresh-0.tar.gz", "fresh-1.tar.gz"]
        factors = {name: float(i + 2) for i, name in enumerate(names)}
        factors.update({name: float(100 + j) for j, name in enumerate(fresh)})
        s3.publish([doubler_archive(work, name, factor=factors[name]) for name in factors])
        assert s3.proxy is not None
        controller = Controller(work, s3.proxy.url, config.capacity, config.ready_timeout_s)
        models = Models(factors, hot=names[:2], cold=names[2:])
        traffic = Traffic(controller.url, ENDPOINT, models, config.clients, config.hot_rate)
        probes: list[Call] = []
        after: list[Call] = []
        kill_at: float | None = None
        runtime_back_at: float | None = None
        controller.start()
        try:
            with httpx.Client(base_url=controller.url, timeout=70) as client:
                for hot in models.hot:
                    warm = invoke(client, ENDPOINT, hot, factors[hot])
                    if warm.status != 200:
                        raise RuntimeError(f"warm-up of {hot} got {warm}")
                rss_start = controller.rss()
                lag_before = read_samples(client.get("/metrics").text)
                hot_loads_before = _loads(client, models.hot)
                began = time.monotonic()
                traffic.start()

                _sleep_until(began + config.kill_at * config.duration_s)
                triton = controller.triton_pid()
                kill_at = time.monotonic()
                os.kill(triton, signal.SIGKILL)
                runtime_back_at = _ping_back(client, kill_at + 60)

                _sleep_until(began + config.outage_at * config.duration_s)
                outage_start = time.monotonic()
                with s3.proxy.outage():
                    # Never-requested models need S3: each call here must fail, not hang.
                    while time.monotonic() < outage_start + config.outage_s:
                        target = fresh[len(probes) % len(fresh)]
                        probes.append(invoke(client, ENDPOINT, target, factors[target]))
                        _sleep_until(probes[-1].started + 1.0)
                outage_end = time.monotonic()
                time.sleep(OUTAGE_MARGIN_S)
                after = [invoke(client, ENDPOINT, target, factors[target]) for target in fresh]

                _sleep_until(began + config.duration_s)
                traffic.stop()
                samples = read_samples(client.get("/metrics").text)
                hot_loads = _loads(client, models.hot) - hot_loads_before
                rss_end = controller.rss()
        finally:
            traffic.stop()
            stopped = controller.stop()

    assert kill_at is not None
    recovered = [c.ended for c in traffic.calls if c.started >= kill_at and c.status == 200]
    recovered_at = min(recovered) if recovered else None
    kill_end = (recovered_at if recovered_at is not None else math.inf) + RECOVERY_MARGIN_S
    return SoakResult(
        duration_s=config.duration_s,
        clients=config.clients,
        models=config.models,
        capacity=config.capacity,
        calls=list(traffic.calls),
        hot=models.hot,
        windows=[
            Window("triton kill", kill_at, kill_end),
            Window("s3 outage", outage_start, outage_end + OUTAGE_MARGIN_S),
        ],
        kill_at=kill_at,
        runtime_back_at=runtime_back_at,
        recovered_at=recovered_at,
        outage_probes=probes,
        after_outage_probes=after,
        proxy_refused=s3.proxy.refused,
        proxy_cut=s3.proxy.cut,
        abuse=traffic.abuse,
        lag_samples=traffic.lag_samples,
        lag_max_before_s=lag_before.get(LAG_MAX, math.nan),
        lag_max_s=samples.get(LAG_MAX, math.nan),
        hot_loads=hot_loads,
        loads=_sum(samples, "mme_model_loading_time_seconds_count"),
        unloads=_sum(samples, "mme_model_unloading_time_seconds_count"),
        rss_start=rss_start,
        rss_end=rss_end,
        exit_code=stopped.exit_code,
        left_in_group=stopped.left_in_group,
        log_tail=stopped.log_tail,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--capacity", type=int, default=4, help="--max-loaded-models")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds S3 is unreachable")
    parser.add_argument("--hot-rate", type=float, default=20.0, help="calls/s per hot client")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    config = SoakConfig(
        args.duration, args.clients, args.models, args.capacity, args.outage, args.hot_rate
    )
    result = run_soak(config)
    table = render(result)
    print(table)
    for call in result.outside[:10]:
        print(f"outside a window: {call}", file=sys.stderr)
    if args.write:
        append_result(
            "Fault soak: churn, Triton SIGKILL, S3 outage, hostile requests",
            f"{config.models} Python-backend models (each its own factor), "
            f"--max-loaded-models {config.capacity}, {config.clients} client threads for "
            f"{config.duration_s:.0f} s ({max(1, config.clients // 4)} calling the cold models "
            f"0.5 s apart, the rest the two hot models at {config.hot_rate:.0f} calls/s each), "
            "`mme-local up` as a subprocess; "
            f"Triton SIGKILLed at {config.kill_at:.0%}, S3 reset by a proxy for "
            f"{config.outage_s:.0f} s from {config.outage_at:.0%}, a hostile request every "
            "0.5 s. Latencies are client-side; the clients share the machine's cores with the "
            "controller, Triton and moto. A hot call that overlaps a cold model's load or unload "
            "waits for it inside Triton: in the same set-up, calls straight to Triton's "
            "SageMaker port stalled 1.3-3.4 s at the same moments as the gateway's slow hot calls.",
            table,
        )


if __name__ == "__main__":
    main()
