"""Starting and stopping the torch host beside Triton: nothing of it runs on the event loop,
nothing of it is left behind, and each start has its own log."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mme_local.runtime import torch_host_process
from mme_local.runtime.procs import processes_in_group
from mme_local.runtime.torch_host_process import TorchHostProcess


async def test_stop_ends_the_host_off_the_event_loop_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = TorchHostProcess(tmp_path / "torch-host.log")
    host.start()
    pid, folder = host.pid, Path(str(host.socket_path)).parent
    assert pid is not None and folder.is_dir()
    threads: list[int] = []

    def recording(group: int) -> list[int]:
        threads.append(threading.get_ident())
        return processes_in_group(group)

    monkeypatch.setattr(torch_host_process, "processes_in_group", recording)
    await host.stop(0.2)
    assert threads, "the host's group was never checked"
    assert threading.get_ident() not in threads, "/proc was scanned on the event loop"
    assert processes_in_group(pid) == []
    assert not folder.exists() and host.pid is None and host.socket_path is None


async def test_each_start_has_a_fresh_log_and_the_one_before_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "torch-host.log"
    log.write_text("the previous run's host\n")
    host = TorchHostProcess(log)
    host.start()
    try:
        assert (tmp_path / "torch-host.log.1").read_text() == "the previous run's host\n"
        assert "previous run" not in log.read_text()
    finally:
        await host.stop(0.2)
