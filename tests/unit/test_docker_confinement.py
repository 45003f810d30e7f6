"""The docker runtime's network confinement and its removal of leftover containers (fakes)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest

from mme_local.runtime.docker_owner import (
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    OWNER_STARTED_LABEL,
    owner_labels,
)
from mme_local.runtime.docker_runtime import (
    ImageMissing,
)
from mme_local.runtime.errors import RuntimeFailure
from tests.unit.test_docker_spec import FakeContainer, FakeEngine, _triton


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(name: str, host: str, pid: int, started: str) -> FakeContainer:
    labels = {OWNER_HOST_LABEL: host, OWNER_PID_LABEL: str(pid), OWNER_STARTED_LABEL: started}
    return FakeContainer(None, labels=labels, name=name)


async def test_containers_of_dead_controllers_are_removed_at_start(tmp_path: Path) -> None:
    here = socket.gethostname()
    mine = owner_labels()
    engine = FakeEngine(image_present=False)
    dead = _leftover("dead", here, _dead_pid(), "123")
    reused = _leftover("reused-pid", here, os.getpid(), "1")  # same pid, another process
    alive = _leftover("alive", here, os.getpid(), mine[OWNER_STARTED_LABEL])
    elsewhere = _leftover("other-host", here + "-not", _dead_pid(), "123")
    unlabelled = FakeContainer(None, labels={"mme-local.endpoint": "x"}, name="unlabelled")
    engine.containers.existing = [dead, reused, alive, elsewhere, unlabelled]
    with pytest.raises(ImageMissing):
        await _triton(tmp_path, engine).start()
    assert [c.name for c in engine.containers.existing if c.removed] == ["dead", "reused-pid"]


async def test_a_container_carries_its_owner(tmp_path: Path) -> None:
    refusal = docker.errors.APIError("500 Server Error", explanation="port is busy")
    engine = FakeEngine(start_error=refusal)
    with pytest.raises(RuntimeFailure):
        await _triton(tmp_path, engine, gpus="none").start()
    labels = engine.containers.kwargs["labels"]
    assert labels[OWNER_PID_LABEL] == str(os.getpid())
    assert labels[OWNER_HOST_LABEL] == socket.gethostname()
    assert labels[OWNER_STARTED_LABEL] == owner_labels()[OWNER_STARTED_LABEL] != ""


async def test_a_bridge_engine_publishes_the_port_on_loopback_only(tmp_path: Path) -> None:
    refusal = docker.errors.APIError("500 Server Error", explanation="port is busy")
    engine = FakeEngine(start_error=refusal, bridge=True)
    triton = _triton(tmp_path, engine, gpus="none")
    with pytest.raises(RuntimeFailure):
        await triton.start()
    kwargs = engine.containers.kwargs
    port = int(kwargs["labels"]["mme-local.port"])
    assert kwargs["network_mode"] == "bridge"
    assert kwargs["ports"] == {f"{port}/tcp": ("127.0.0.1", port)}


async def test_without_a_bridge_the_host_network_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refusal = docker.errors.APIError("500 Server Error", explanation="port is busy")
    engine = FakeEngine(start_error=refusal, bridge=False)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeFailure):
        await _triton(tmp_path, engine, gpus="none").start()
    assert engine.containers.kwargs["network_mode"] == "host"
    assert "ports" not in engine.containers.kwargs
    assert "listens on every interface" in caplog.text
