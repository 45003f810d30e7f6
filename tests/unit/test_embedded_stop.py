"""Stopping the embedded Triton: the process group ends, and nothing of it runs on the event loop.

A stand-in process group (a shell and its child, in their own session) plays Triton and a
backend stub; no Triton is needed to judge how the group is ended.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mme_local.runtime import embedded
from mme_local.runtime.base import TritonSettings
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.runtime.procs import processes_in_group
from mme_local.runtime.provision import TritonInstall


def _install(root: Path) -> TritonInstall:
    return TritonInstall(
        home=root,
        binary=root / "bin" / "tritonserver",
        library_dirs=(),
        python_backend_dir=root / "backends" / "python",
        stubs_dir=None,
        source="test",
        version="2.51.0",
    )


def _group_of_two() -> subprocess.Popen[bytes]:
    """A leader that ignores SIGTERM (as a wedged Triton would) and a child in its group."""
    return subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 300 & wait"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_for_members(group: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(processes_in_group(group)) < count:
        assert time.monotonic() < deadline, "the stand-in group did not start"
        time.sleep(0.01)


async def test_stop_ends_the_group_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    triton = EmbeddedTriton(_install(tmp_path), tmp_path, TritonSettings(stop_grace_s=0.2))
    process = _group_of_two()
    triton._process = process
    _wait_for_members(process.pid, 2)
    threads: list[int] = []

    def recording(group: int) -> list[int]:
        threads.append(threading.get_ident())
        return processes_in_group(group)

    monkeypatch.setattr(embedded, "processes_in_group", recording)
    await triton.stop()
    assert threads, "the group was never checked"
    assert threading.get_ident() not in threads, "/proc was scanned on the event loop"
    assert processes_in_group(process.pid) == []
    assert process.returncode is not None, "the leader was reaped"


class _Unreapable:
    """A process handle whose wait() never returns unless given a timeout."""

    def __init__(self, real: subprocess.Popen[bytes]) -> None:
        self.real = real
        self.pid = real.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return None

    def send_signal(self, signal: int) -> None:
        self.real.send_signal(signal)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            threading.Event().wait()
        raise subprocess.TimeoutExpired("tritonserver", timeout or 0)


async def test_stop_returns_even_if_the_process_is_never_reaped(tmp_path: Path) -> None:
    triton = EmbeddedTriton(_install(tmp_path), tmp_path, TritonSettings(stop_grace_s=0.2))
    process = _group_of_two()
    triton._process = _Unreapable(process)  # type: ignore[assignment]
    _wait_for_members(process.pid, 2)
    try:
        await triton.stop()
        assert triton.pid is None
    finally:
        process.kill()
        process.wait(10)


async def test_after_a_crash_the_orphaned_stubs_are_ended(tmp_path: Path) -> None:
    """Triton SIGKILLed (and already reaped by the liveness check): its stub lives on in the
    group until the restart's stop ends it, so no process outlives the crash."""
    triton = EmbeddedTriton(_install(tmp_path), tmp_path, TritonSettings(stop_grace_s=0.2))
    process = _group_of_two()
    triton._process = process
    _wait_for_members(process.pid, 2)
    process.kill()
    process.wait(10)
    assert len(processes_in_group(process.pid)) == 1, "the stand-in stub outlived its leader"
    await triton.stop()
    assert processes_in_group(process.pid) == []
    assert triton.pid is None


def test_only_this_servers_shared_memory_regions_are_removed(tmp_path: Path) -> None:
    from mme_local.runtime.embedded import remove_shared_memory

    ours = ["mme_local_1_abc_region0", "mme_local_1_abc_region1"]
    others = ["mme_local_1_abd_region0", "triton_python_backend_shm_region_x"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"\0" * 16)
    assert sorted(remove_shared_memory("mme_local_1_abc_", tmp_path)) == ours
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
    assert remove_shared_memory("mme_local_1_abc_", tmp_path) == []


def test_regions_of_mme_local_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    from mme_local.runtime.embedded import remove_orphaned_shared_memory

    gone = subprocess.Popen(["true"])
    gone.wait()
    names = [
        f"mme_local_{gone.pid}_abc_region0",  # its process has ended: left behind by a kill
        f"mme_local_{os.getpid()}_abc_region0",  # ours, still running
        "triton_python_backend_shm_region_x",  # not ours to judge
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"\0")
    assert remove_orphaned_shared_memory(tmp_path) == names[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
