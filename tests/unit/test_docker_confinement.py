"""The docker runtime's network confinement and its removal of leftover containers (fakes)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from mme_local.runtime.docker_owner import (
    OWNER_HOST_LABEL,
    OWNER_LOCK_LABEL,
    OWNER_PID_LABEL,
    OWNER_STARTED_LABEL,
    OWNER_TOKEN_LABEL,
    OwnerLock,
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


def _lock_file(folder: Path, token: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"owner-{token}.lock"
    path.write_text(token)
    return path


@contextlib.contextmanager
def _held_by_another_process(path: Path) -> Iterator[None]:
    """A live controller: another process holding the lock file (as a controller in another
    PID namespace would; only the file is shared)."""
    script = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'r+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def _leftover(
    name: str, lock: Path | None, token: str = "", host: str = "", pid: int = 0
) -> FakeContainer:
    # Host name and pid as a controller in another PID namespace would write them: this
    # host's name, and a pid that here names a dead process (or another one).
    labels = {
        OWNER_HOST_LABEL: host or socket.gethostname(),
        OWNER_PID_LABEL: str(pid or _dead_pid()),
        OWNER_STARTED_LABEL: "123",
    }
    if lock is not None:
        labels[OWNER_LOCK_LABEL] = str(lock)
        labels[OWNER_TOKEN_LABEL] = token or lock.stem.removeprefix("owner-")
    return FakeContainer(None, labels=labels, name=name)


async def test_only_containers_whose_owner_lock_is_free_are_removed(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    dead_lock = _lock_file(locks, "dead0")
    live_lock = _lock_file(locks, "live0")
    engine = FakeEngine(image_present=False)
    dead = _leftover("dead", dead_lock)
    live = _leftover("live-in-another-pid-namespace", live_lock, pid=os.getpid())
    unseen = _leftover("lock-not-visible-here", locks / "owner-gone0.lock")
    impostor = _leftover("another-file-by-that-name", dead_lock, token="not-dead0")
    older = _leftover("no-lock-label", None)
    unlabelled = FakeContainer(None, labels={"mme-local.endpoint": "x"}, name="unlabelled")
    engine.containers.existing = [dead, live, unseen, impostor, older, unlabelled]
    with _held_by_another_process(live_lock), pytest.raises(ImageMissing):
        await _triton(tmp_path, engine).start()
    assert [c.name for c in engine.containers.existing if c.removed] == ["dead"]
    assert not dead_lock.exists(), "the dead owner's lock file goes with its container"
    assert live_lock.exists()


async def test_a_container_carries_its_owner(tmp_path: Path) -> None:
    refusal = docker.errors.APIError("500 Server Error", explanation="port is busy")
    engine = FakeEngine(start_error=refusal)
    with pytest.raises(RuntimeFailure):
        await _triton(tmp_path, engine, gpus="none").start()
    labels = engine.containers.kwargs["labels"]
    assert labels[OWNER_PID_LABEL] == str(os.getpid())
    assert labels[OWNER_HOST_LABEL] == socket.gethostname()
    assert labels[OWNER_STARTED_LABEL] == owner_labels()[OWNER_STARTED_LABEL] != ""
    lock = Path(labels[OWNER_LOCK_LABEL])
    assert lock.is_absolute() and lock.parent == (tmp_path / "triton").resolve()
    assert not lock.exists(), "the failed start removed its container, then its lock file"


def test_the_owner_lock_is_held_until_released(tmp_path: Path) -> None:
    owner = OwnerLock(tmp_path / "runtime")
    owner.acquire()
    assert owner.path.read_text() == owner.labels()[OWNER_TOKEN_LABEL]
    assert owner.labels()[OWNER_LOCK_LABEL] == str(owner.path)
    with owner.path.open("r+") as judge, pytest.raises(BlockingIOError):
        fcntl.flock(judge, fcntl.LOCK_EX | fcntl.LOCK_NB)
    owner.release()
    assert not owner.path.exists()
    owner.release()  # twice is harmless


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
