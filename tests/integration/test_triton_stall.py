"""An invocation sent while Triton loads another model is counted, through the real gateway,
the real Triton and real boto3 (the stall itself is measured by bench/triton_stall.py)."""

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
