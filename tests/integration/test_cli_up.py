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
from mme_local.runtime.procs import command_line, descendants, processes_in_group
from tests.support import doubler_archive, tar_gz, write_doubler_folder

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


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_up_serves_the_cli_verbs_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    doubler_archive(models, "model-0.tar.gz", factor=3)
    broken = tmp_path / "broken" / "broken"
    write_doubler_folder(broken)
    (broken / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n"
        "        raise RuntimeError('boom at load')\n"
    )
    tar_gz(broken, models / "broken.tar.gz")
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
        assert invoked.stdout == "y  FP32  [1]  6\n"
        assert "cold (was remote)" in invoked.stderr and "AllTraffic" in invoked.stderr
        again = _run("invoke", "model-0.tar.gz", "--body", body, "--endpoint-url", url, "--raw")
        assert '"data":[6.0]' in again.stdout

        warm = _run("invoke", "model-0.tar.gz", "--body", body, "--endpoint-url", url)
        assert " warm " in warm.stderr

        bad_input = body.replace('"x"', '"nope"')
        failed = _run("invoke", "model-0.tar.gz", "--body", bad_input, "--endpoint-url", url)
        assert failed.returncode == 1
        assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert failed.stderr.startswith("error: ModelError (424, the model answered 400): ")

        missing = _run("invoke", "nothing.tar.gz", "--body", body, "--endpoint-url", url)
        assert missing.returncode == 1
        assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
        assert missing.stderr.startswith("error: ValidationError (400): ")

        broken = _run("invoke", "broken.tar.gz", "--body", body, "--endpoint-url", url)
        assert broken.returncode == 1
        assert broken.stderr.startswith("error: ModelError (424, the model answered 400): ")

        listed = _run("models", "--endpoint-url", url)
        assert listed.returncode == 0, listed.stderr
        assert "model-0.tar.gz" in listed.stdout and "loaded" in listed.stdout
        assert "loaded models  1 of 2" in listed.stdout
        assert "host memory" in listed.stdout and "evictions" in listed.stdout
        assert " s ago" in listed.stdout

        stats = _run("stats", "--endpoint-url", url)
        assert stats.returncode == 0, stats.stderr
        assert "mme_invocations_total" in stats.stdout and "cache hit ratio" in stats.stdout
        assert "p99" in stats.stdout
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
    assert "WARNING mme_local.gateway.service: broken.tar.gz could not be loaded: " in stderr
    assert "boom at load" in stderr
    assert processes_in_group(process.pid) == [], "Triton, its stubs and moto are all gone"


def test_unreachable_endpoint_is_one_clear_line() -> None:
    result = _run("models", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "no mme-local endpoint answers at" in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_up_like_ctrl_c(tmp_path: Path, stop: signal.Signals) -> None:
    models = tmp_path / "models"
    models.mkdir()
    doubler_archive(models, "model-0.tar.gz", factor=3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [CLI, "up", "--port", str(port), "--models", str(models)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        _wait_for_ping(url, process)
        cache_dir = Path(httpx.get(f"{url}/_mme/status", timeout=10).json()["cache_dir"])
        body = '{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2]}]}'
        invoked = _run("invoke", "model-0.tar.gz", "--body", body, "--endpoint-url", url)
        assert invoked.returncode == 0, invoked.stderr
        assert cache_dir.is_dir()
        # Triton and moto run in sessions of their own, so they are found as descendants.
        children = descendants(process.pid)
        names = {" ".join(command_line(pid)) for pid in children}
        assert any("tritonserver" in name for name in names), names
        assert any("triton_python_backend_stub" in name for name in names), names

        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert f"{stop.name}: stopping, as on Ctrl-C" in stderr
    assert "stopped: gateway, Triton and the store are down" in stderr
    assert [pid for pid in children if _alive(pid)] == [], "no tritonserver, stub or moto is left"
    assert not cache_dir.exists(), "the temporary cache folder is removed"
