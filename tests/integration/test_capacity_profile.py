"""`capacity profile` on the real Triton outlives the model server's death: a measurement the
server died during is taken again on the restarted server, not failed or kept half-done.

Triton (pytriton's 2.x build) has segfaulted on a SageMaker unload a few milliseconds after
the load it followed; the supervisor restarted it, and the profile then failed with "the model
server is restarting". Here the server is killed with the same signal just after the model's
measurement (its unload included) ended: the measurement looks whole, but ran in part on a
server that is gone. (A death that fails a measurement outright, and one the supervisor has
yet to notice, are in tests/unit/test_profiler_restarts.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from mme_local.capacity import profiler
from mme_local.capacity.profile import Footprint
from mme_local.capacity.profiler import EMPTY_MODEL, Sample, measure_footprints
from mme_local.capacity.sources import from_folder
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body

pytestmark = pytest.mark.integration


def _kill(pid: int) -> None:
    """SIGSEGV, as Triton's crash, and back once the process has ended: Triton's handler prints
    a backtrace and serves on for some milliseconds, and a crash inside a measurement is over
    before the measurement is (the call it crashed on failed). Ended means its exit can be
    collected (Triton is this process's child): its first thread shows as a zombie in /proc
    while the others are still being torn down, and then the process is still running."""
    os.kill(pid, signal.SIGSEGV)
    for _ in range(1000):
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:  # already collected
            return
        time.sleep(0.01)
    raise AssertionError(f"Triton ({pid}) outlived SIGSEGV by 10 s")


def _triton(measurer: profiler._Measurer) -> int:
    server = measurer.emulator.server
    assert server is not None
    return server.process_ids()[0]


def test_a_measurement_the_server_died_during_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    doubler_archive(folder, "doubler.tar.gz")
    distinct = from_folder(folder)
    kills: list[int] = []
    measure_once = profiler._Measurer._measure_once

    async def measure_then_die(
        self: profiler._Measurer, target: str, sample: Sample | None
    ) -> Footprint:
        footprint = await measure_once(self, target, sample)
        if target != EMPTY_MODEL and not kills:
            kills.append(_triton(self))
            _kill(kills[-1])
        return footprint

    monkeypatch.setattr(profiler._Measurer, "_measure_once", measure_then_die)
    said: list[str] = []
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache")
    sample = Sample(kserve_body([1.0, 2.0]), "application/json", repeats=2)

    measured = asyncio.run(measure_footprints(distinct, settings, sample, said.append))

    assert len(kills) == 1
    (artifact,) = measured.artifacts
    assert artifact.target_models == ["doubler.tar.gz"]
    assert artifact.load_s > 0 and artifact.unload_s > 0
    assert artifact.host_memory_bytes > 0
    assert artifact.warm_latency_s is not None and artifact.warm_latency_s > 0
    retries = [line for line in said if "died while measuring" in line]
    assert retries == [
        "the model server died while measuring doubler.tar.gz; measuring it "
        f"again on the restarted server ({n}/3)"
        for n in (2,)
    ]
    # each restarted server is warmed up before it is measured, as the first one was
    assert said.count("warming up the runtime with an empty TorchScript model") == 2
