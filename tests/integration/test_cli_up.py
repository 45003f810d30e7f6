"""`mme-local up` as a user runs it: banner, the other verbs against it, Ctrl-C, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mme_local.runtime.base import free_port
from mme_local.runtime.procs import processes_in_group
from tests.support import doubler_archive

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "mme-local")


def _wait_for_ping(url: str, process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("mme-local up did not answer /ping")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_up_serves_the_cli_verbs_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    doubler_archive(models, "model-0.tar.gz", factor=3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [CLI, "up", "--port", str(port), "--models", str(models), "--max-loaded-models", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        _wait_for_ping(url, process)
        body = '{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2]}]}'
        invoked = _run("invoke", "model-0.tar.gz", "--body", body, "--endpoint-url", url)
        assert invoked.returncode == 0, invoked.stderr
        assert '"data":[6.0]' in invoked.stdout
        assert "AllTraffic" in invoked.stderr

        listed = _run("models", "--endpoint-url", url)
        assert listed.returncode == 0, listed.stderr
        assert "model-0.tar.gz" in listed.stdout and "loaded" in listed.stdout

        stats = _run("stats", "--endpoint-url", url)
        assert stats.returncode == 0, stats.stderr
        assert "mme_invocations_total" in stats.stdout
        assert "mme_loaded_model_count" in stats.stdout

        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert f"InvokeEndpoint  {url}/endpoints/local-mme/invocations" in stderr
    assert f"Live page       {url}/_mme/" in stderr
    assert 'boto3.client("sagemaker-runtime"' in stderr
    assert "stopped: gateway, Triton and the store are down" in stderr
    assert processes_in_group(process.pid) == [], "Triton, its stubs and moto are all gone"


def test_unreachable_endpoint_is_one_clear_line() -> None:
    result = _run("models", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "no mme-local endpoint answers at" in result.stderr
