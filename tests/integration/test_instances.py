"""`mme-local up --instance-count 2` as a user runs it: two Tritons behind one gateway.

Each instance has its own Triton, cache folder and budget; the views and metrics say which
holds what; killing one Triton leaves the other serving while the killed one restarts; Ctrl-C
leaves no process of either.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mme_local.metrics_reader import read_samples
from mme_local.runtime.base import free_port
from mme_local.runtime.procs import command_line, descendants, processes_in_group
from tests.integration.test_cli_up import CLI, _alive, _run, _wait_for_ping
from tests.integration.test_live_page import RenderedPage, _chromium
from tests.support import doubler_archive

pytestmark = pytest.mark.integration

BODY = '{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2]}]}'


def _invoke(url: str, target: str) -> subprocess.CompletedProcess[str]:
    return _run("invoke", target, "--body", BODY, "--endpoint-url", url)


def _status(url: str) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"{url}/_mme/status", timeout=10).json()
    return status


def _live_state(url: str, instance: int) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(
        f"{url}/_mme/live/state?instance={instance}", timeout=10
    ).json()
    return state


def _tritons(root: int, cache_dirs: list[str]) -> list[int]:
    """Each instance's tritonserver pid, found by the work folder in its command line."""
    found = []
    commands = {pid: command_line(pid) for pid in descendants(root)}
    for cache_dir in cache_dirs:
        pids = [
            pid
            for pid, command in commands.items()
            if command
            and command[0].endswith("tritonserver")
            and any(f"{cache_dir}/.runtime" in part for part in command)
        ]
        assert len(pids) == 1, (cache_dir, pids)
        found.append(pids[0])
    return found


def test_two_instances_route_show_recover_and_stop_clean(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for factor in (2, 3):
        doubler_archive(models, f"model-{factor}.tar.gz", factor=factor)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [CLI, "up", "--port", str(port), "--models", str(models)]
    cloudwatch = tmp_path / "cloudwatch.jsonl"
    process = subprocess.Popen(
        [*command, "--instance-count", "2", "--max-loaded-models", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        # One CloudWatch period for the whole run: the file then holds the one written at
        # the stop (utilisation is sampled once, at the start).
        env={
            **os.environ,
            "MME_LOCAL_CLOUDWATCH_FILE": str(cloudwatch),
            "MME_LOCAL_METRICS_PERIOD": "3600",
        },
    )
    try:
        _wait_for_ping(url, process)
        status = _status(url)
        assert status["instance_count"] == 2
        cache_dirs = [item["cache_dir"] for item in status["instances"]]
        assert [Path(d).name for d in cache_dirs] == ["instance-0", "instance-1"]
        assert status["instances"][0]["triton_url"] != status["instances"][1]["triton_url"]

        # Nothing held: the first model goes to instance 0 (ties: the lowest index); the second
        # to the instance holding the least memory, 1. Each stays within its own budget of 1.
        for factor in (2, 3):
            invoked = _invoke(url, f"model-{factor}.tar.gz")
            assert invoked.returncode == 0, invoked.stderr
            assert invoked.stdout == f"y  FP32  [1]  {2 * factor}\n"
        warm = _invoke(url, "model-2.tar.gz")
        assert " warm " in warm.stderr, "a held model keeps going to the instance holding it"
        status = _status(url)
        assert [item["loaded"] for item in status["instances"]] == [
            ["model-2.tar.gz"],
            ["model-3.tar.gz"],
        ]
        assert status["loaded_models"] == 2

        listed = _run("models", "--endpoint-url", url)
        assert listed.returncode == 0, listed.stderr
        assert "instance 0: loaded model-2.tar.gz" in listed.stdout
        assert "instance 1: loaded model-3.tar.gz" in listed.stdout
        rows = httpx.get(f"{url}/_mme/models", timeout=10).json()
        assert {(row["target_model"], row["instance"], row["state"]) for row in rows} == {
            ("model-2.tar.gz", 0, "loaded"),
            ("model-3.tar.gz", 1, "loaded"),
        }

        metrics = read_samples(httpx.get(f"{url}/metrics", timeout=10).text)
        assert metrics['mme_instance_loaded_model_count{instance="0"}'] == 1
        assert metrics['mme_instance_loaded_model_count{instance="1"}'] == 1
        assert metrics['mme_instance_model_loads_total{instance="1"}'] == 1
        assert metrics['mme_instance_model_cache_hit_total{instance="0"}'] == 1
        assert metrics['mme_instance_memory_bytes{instance="1",memory="host"}'] > 0
        assert {'mme_instance_cpu_utilization_percent{instance="0"}',
                'mme_instance_cpu_utilization_percent{instance="1"}'} <= set(metrics)  # fmt: skip
        # CloudWatch's own names stay per endpoint and variant: the sums over instances.
        assert metrics["mme_loaded_model_count"] == 2
        assert metrics["mme_invocations_per_instance_total"] == 1.5

        # The live page shows one instance at a time, the one a link or its menu chooses.
        state = httpx.get(f"{url}/_mme/live/state?instance=1", timeout=10).json()
        assert (state["instance"], state["instances"]) == (1, 2)
        bars = {bar["name"]: bar for bar in state["budgets"]}
        assert (bars["loaded models"]["used"], bars["loaded models"]["limit"]) == (1, 1)
        dom = _chromium("--virtual-time-budget=4000", "--dump-dom", f"{url}/_mme/?instance=1")
        page = RenderedPage()
        page.feed(dom.stdout)
        assert page.renders >= 1, dom.stdout[:2000]
        assert page.models["model-3.tar.gz"]["state"] == "loaded"
        assert page.models["model-2.tar.gz"]["state"] == "remote", "instance 0's, not this one's"
        menu = re.search(r'<select[^>]*id="instance"[^>]*>', dom.stdout)
        assert menu is not None and "hidden" not in menu.group(0)
        assert "instance 1 of 2" in dom.stdout

        # Kill instance 0's Triton: instance 1 keeps serving its model meanwhile.
        first, second = _tritons(process.pid, cache_dirs)
        os.kill(first, signal.SIGKILL)
        for _ in range(5):
            invoked = _invoke(url, "model-3.tar.gz")
            assert invoked.returncode == 0, invoked.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _status(url)["runtime_running"]:
            time.sleep(0.2)
        status = _status(url)
        assert [item["runtime_running"] for item in status["instances"]] == [True, True]
        restarted, still = _tritons(process.pid, cache_dirs)
        assert restarted != first and still == second, "only the killed one was restarted"
        metrics = read_samples(httpx.get(f"{url}/metrics", timeout=10).text)
        assert metrics["mme_runtime_restarts_total"] == 1
        # Each instance's timeline marks its own restarts (the recorder samples every second).
        deadline = time.monotonic() + 10
        while True:
            logs = [_live_state(url, i)["restarts"] for i in (0, 1)]
            if any(mark["kind"] == "runtime restart" for mark in logs[0]):
                break
            assert time.monotonic() < deadline, logs
            time.sleep(0.2)
        assert logs[1] == [], "instance 1 never went down"
        # The restarted instance holds nothing; it loads model-2 again from its disk.
        invoked = _invoke(url, "model-2.tar.gz")
        assert invoked.returncode == 0, invoked.stderr

        children = descendants(process.pid)
        assert len(_tritons(process.pid, cache_dirs)) == 2
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    assert "2 instances, " in stderr
    assert f"Live page       {url}/_mme/  (one instance at a time: {url}/_mme/?instance=1" in stderr
    assert "stopped: gateway, Triton and the store are down" in stderr
    # The CloudWatch lines of the one period, written at the stop: each instance sends its own
    # instance metrics (one model loaded in each), as each cloud instance does.
    lines = [json.loads(line) for line in cloudwatch.read_text().splitlines()]
    assert len({line["MetricData"][0]["Timestamp"] for line in lines}) == 1, "one period"
    mine: dict[str, list[float]] = {}
    for line in lines:
        (datum,) = line["MetricData"]
        if line["Namespace"] == "/aws/sagemaker/Endpoints":
            mine.setdefault(datum["MetricName"], []).append(datum["Value"])
    assert mine["LoadedModelCount"] == [1, 1]
    assert len(mine["CPUUtilization"]) == len(mine["MemoryUtilization"]) == 2
    assert [pid for pid in children if _alive(pid)] == [], "no tritonserver, stub or moto is left"
    assert processes_in_group(process.pid) == []
    assert not any(Path(d).exists() for d in cache_dirs), "the temporary cache folder is removed"
