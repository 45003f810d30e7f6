"""An invocation sent while Triton loads another model is counted, and with Triton 25.11's
model-list mutex played, one sent during another model's unload ends after it: through the real
gateway, the real Triton and real boto3 (the stalls themselves are measured by
bench/triton_stall.py)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator, run_in_thread
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body

pytestmark = pytest.mark.integration

COUNTED = "mme_invocations_during_load_or_unload_total"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path_factory.mktemp("cache") / "models")
    with run_in_thread(settings) as emulator:
        yield emulator


def _upload(running: RunningEmulator, path: Path) -> str:
    running.s3_client().upload_file(
        str(path), running.model_data.bucket, running.model_data.prefix + path.name
    )
    return path.name


def _invoke(running: RunningEmulator, target: str) -> None:
    running.runtime_client().invoke_endpoint(
        EndpointName="local-mme", TargetModel=target, Body=kserve_body([1.0])
    )


def _state(running: RunningEmulator, target: str) -> str | None:
    for row in httpx.get(f"{running.url}/_mme/models").json():
        if row["target_model"] == target:
            return str(row["state"])
    return None


def test_an_invocation_sent_during_another_models_load_is_counted(
    running: RunningEmulator, tmp_path: Path
) -> None:
    hot = _upload(running, doubler_archive(tmp_path, "hot.tar.gz"))
    _invoke(running, hot)
    slow = _upload(running, doubler_archive(tmp_path, "slow.tar.gz", load_delay_s=2.0))
    quiet_before = running.metrics().get(COUNTED, 0.0)
    _invoke(running, hot)
    assert running.metrics().get(COUNTED, 0.0) == quiet_before, "nothing loads: not counted"

    def cold() -> None:
        # A slow machine may answer 429; the load goes on either way.
        with contextlib.suppress(ClientError):
            _invoke(running, slow)

    loader = threading.Thread(target=cold)
    loader.start()
    deadline = time.monotonic() + 30
    while _state(running, slow) != "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(running, slow) == "loading"
    time.sleep(0.5)  # past the slot queue and memory probe: the load call is at the container
    started = time.monotonic()
    _invoke(running, hot)
    waited = time.monotonic() - started
    loader.join()
    assert running.metrics()[COUNTED] == quiet_before + 1, f"hot call took {waited:.2f} s"


HELD = "mme_invocations_held_by_unload_total"


@pytest.fixture(scope="module")
def blocking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """Two models at most, and Triton 25.11's model-list mutex played by the gateway."""
    settings = EmulatorSettings(
        port=0,
        max_loaded_models=2,
        unload_blocks_invokes="on",
        cache_dir=tmp_path_factory.mktemp("cache") / "models",
    )
    with run_in_thread(settings) as emulator:
        yield emulator


def test_with_unloads_blocking_a_hot_request_sent_during_an_unload_ends_after_it(
    blocking: RunningEmulator, tmp_path: Path
) -> None:
    hot, cold, third = (
        _upload(blocking, doubler_archive(tmp_path, name))
        for name in ("hot.tar.gz", "cold.tar.gz", "third.tar.gz")
    )
    _invoke(blocking, cold)
    _invoke(blocking, hot)  # cold is now the least recently used
    held_before = blocking.metrics().get(HELD, 0.0)

    def evict_cold() -> None:
        with contextlib.suppress(ClientError):  # a slow machine may answer 429
            _invoke(blocking, third)

    loader = threading.Thread(target=evict_cold)
    loader.start()
    deadline = time.monotonic() + 30
    while _state(blocking, cold) != "unloading" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(blocking, cold) == "unloading"
    sent = time.time()
    _invoke(blocking, hot)
    answered = time.time()
    loader.join()

    unloaded = [e.at for e in blocking.emulator.cache.evictions if e.target_model == cold]
    assert len(unloaded) == 1
    assert sent < unloaded[0] < answered, "the hot request ended only after the unload"
    assert blocking.metrics()[HELD] == held_before + 1
    status = httpx.get(f"{blocking.url}/_mme/status").json()
    assert status["unload_blocks_invokes"] is True
    assert status["invocations_held_by_unload"] == held_before + 1
