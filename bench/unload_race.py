"""How often the embedded Triton dies on an unload sent right after the same model's load.

pytriton 0.7.0's Triton has segfaulted on a SageMaker unload sent a few milliseconds after
the load of that model answered (in the backtrace: `pthread_mutex_lock` on a thread of
libtritonserver). The container client therefore waits `TritonDialect.unload_settle_s` after
a model's load answered before it unloads that model. This bench measures the crash rate
with a given wait: an emulator with the model cache disabled loads a model for a request
that does nothing and unloads it at once, `--cycles` times, alternating the empty TorchScript
model (the profile's warm-up) and a Python-backend doubler; each death is noticed by the
supervisor, which restarts Triton, and counted. `--settle 0` is the client without the wait.

    .venv/bin/python bench/unload_race.py --settle 0 [--cycles 200] [--write]
    .venv/bin/python bench/unload_race.py --settle 0.1 [--cycles 200] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bench.results import append_result
from mme_local.capacity.profiler import EMPTY_MODEL, write_empty_model
from mme_local.emulator import Emulator
from mme_local.runtime.dialect import TritonDialect
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive


async def run(cycles: int) -> tuple[int, int, float]:
    """(deaths, failed requests, seconds) over `cycles` load-then-unload cycles."""
    with tempfile.TemporaryDirectory(prefix="mme-unload-race-") as work:
        folder = Path(work) / "artifacts"
        folder.mkdir()
        write_empty_model(folder)
        doubler_archive(folder, "doubler.tar.gz")
        settings = EmulatorSettings(
            port=0, models_dir=folder, model_cache="Disabled", cache_dir=Path(work) / "cache"
        )
        emulator = Emulator(settings, lambda message: None)
        await emulator.start()
        failures = 0
        started = time.monotonic()
        try:
            for cycle in range(cycles):
                target = EMPTY_MODEL if cycle % 2 == 0 else "doubler.tar.gz"
                while not emulator.supervisor.running:
                    await asyncio.sleep(0.05)
                try:
                    async with emulator.cache.acquire(target):
                        pass
                    await emulator.cache.settle()
                except Exception as error:
                    failures += 1
                    print(f"cycle {cycle}: {type(error).__name__}: {error}", flush=True)
                if cycle % 20 == 19:
                    deaths = emulator.supervisor.exits
                    print(f"{cycle + 1} cycles, {deaths} deaths", flush=True)
            return emulator.supervisor.exits, failures, time.monotonic() - started
        finally:
            await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=TritonDialect.unload_settle_s)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    TritonDialect.unload_settle_s = args.settle
    deaths, failures, seconds = asyncio.run(run(args.cycles))
    table = (
        "| wait after the load's answer | load-unload cycles | Triton deaths | failed requests "
        "| seconds |\n|---:|---:|---:|---:|---:|\n"
        f"| {args.settle * 1000:.0f} ms | {args.cycles} | {deaths} | {failures} "
        f"| {seconds:.0f} |"
    )
    print(table)
    if args.write:
        append_result(
            "Triton's death on an unload right after a load",
            "Embedded Triton (pytriton 0.7.0), model cache disabled: each request loads a "
            "model (the empty TorchScript model and a Python-backend doubler in turn) and its "
            "end unloads it; the client waits the given time after the load's answer first.",
            table,
        )


if __name__ == "__main__":
    main()
