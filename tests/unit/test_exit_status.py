"""`exit_status`: a dead child is seen dead even while another thread polls it (Popen.poll()
alone then answers None: the capacity profile once kept a measurement from a dead Triton)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mme_local.runtime.procs import exit_status


def _until_ended(pid: int) -> None:
    """Back once `pid` is a zombie, not reaped: dead, its status still to collect."""
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(500):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not end")


def test_a_running_child_is_alive_and_an_ended_one_gives_its_status() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        assert exit_status(process) is None
        os.kill(process.pid, signal.SIGSEGV)
        _until_ended(process.pid)
        assert exit_status(process) == -signal.SIGSEGV
        assert exit_status(process) == -signal.SIGSEGV, "asked again: the same answer"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def process() -> Iterator[subprocess.Popen[bytes]]:
    """A child ended by SIGSEGV, its status not yet collected."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(child.pid, signal.SIGSEGV)
        _until_ended(child.pid)
        yield child
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()


def test_a_dead_child_is_dead_while_another_thread_is_polling_it(
    process: subprocess.Popen[bytes],
) -> None:
    # Another thread inside poll() or wait() holds Popen's lock for a moment.
    lock = process._waitpid_lock  # type: ignore[attr-defined]
    lock.acquire()
    threading.Timer(0.2, lock.release).start()
    assert process.poll() is None, "Popen alone says alive (the race this fixes)"
    assert exit_status(process) == -signal.SIGSEGV


def test_a_child_another_thread_is_reaping_is_dead(process: subprocess.Popen[bytes]) -> None:
    """The other thread has collected the status but not yet stored it (it holds Popen's lock
    between the two): the child is gone, so it is dead, not alive."""
    lock = process._waitpid_lock  # type: ignore[attr-defined]
    lock.acquire()
    _, status = os.waitpid(process.pid, 0)

    def store_and_release() -> None:
        process.returncode = os.waitstatus_to_exitcode(status)
        lock.release()

    threading.Timer(0.2, store_and_release).start()
    assert exit_status(process) == -signal.SIGSEGV
