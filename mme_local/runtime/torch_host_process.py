"""Starting, watching and stopping the torch host beside an embedded Triton.

The host is started before Triton and not waited for: it imports torch (seconds) while Triton
starts (a fraction of one), and a stub that asks before it listens waits for it. Its socket
lies in a private temporary folder (mode 0700, so no other user can ask it to load a file),
removed on stop with everything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mme_local.runtime.errors import RuntimeExited, RuntimeFailure
from mme_local.runtime.logs import read_log_tail, rotate_log
from mme_local.runtime.procs import die_with_parent, exit_status, processes_in_group
from mme_local.runtime.torch_host_wire import SOCKET_ENV, HostGone, connect, receive, send

log = logging.getLogger(__name__)

# glibc keeps freed big blocks in its heaps once its mmap threshold has adapted upwards, and
# every thread gets an arena of its own; both would keep an unloaded module's memory. A fixed
# mmap threshold also fixes the trim threshold (128 KiB), which would give memory back to the
# OS after nearly every inference; the host trims explicitly after each unload instead.
_ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
    "MALLOC_ARENA_MAX": "2",
}


class TorchHostProcess:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: Path | None = None

    @property
    def socket_path(self) -> str | None:
        return str(self._folder / "host.sock") if self._folder is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def environment(self) -> dict[str, str]:
        """What Triton needs in its environment so that its stubs find the host."""
        return {SOCKET_ENV: self.socket_path} if self.socket_path else {}

    def start(self) -> None:
        """Start the host (not waiting for it to listen); call from the event loop's thread.
        A host still running is kept."""
        if self._process is not None and self._process.poll() is None:
            return
        self._folder = Path(tempfile.mkdtemp(prefix="mme-torch-host-"))
        assert self.socket_path is not None
        command = [sys.executable, "-m", "mme_local.runtime.torch_host"]
        # Each host's own log, as Triton's: the previous one is kept as `<name>.1`.
        rotate_log(self.log_path)
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                [*command, "--socket", self.socket_path],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **_ALLOCATOR_ENV},
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def returncode(self) -> int | None:
        """None while it runs (or was never started), else its exit status."""
        return None if self._process is None else exit_status(self._process)

    def log_tail(self, lines: int = 40) -> str:
        return read_log_tail(self.log_path, lines)

    def process_ids(self) -> list[int]:
        if self._process is None or self._process.poll() is not None:
            return []
        return [self._process.pid]

    def model_bytes(self, model_name: str, timeout_s: float = 5.0) -> tuple[int, int] | None:
        """Host and GPU bytes of the tensors of the model loaded from the cache folder
        `<cache>/<model_name>/model/` (all its instances), or None where the host holds none
        of it (or can't be asked). The folder, not Triton's name, because the SageMaker
        front end names a model after its TargetModel while the cache knows its folder."""
        marker = f"/{model_name}/model/"
        found = None
        for hosted in self.hosted(timeout_s, path_contains=marker):
            if marker in str(hosted.get("path", "")):
                host, gpu = found or (0, 0)
                found = (host + int(hosted["host_bytes"]), gpu + int(hosted["gpu_bytes"]))
        return found

    def hosted(self, timeout_s: float = 5.0, path_contains: str = "") -> list[dict[str, Any]]:
        """What the host holds, one entry per model instance, those whose module path holds
        `path_contains` (blocking; call off the loop)."""
        path = self.socket_path
        if path is None or self.returncode() is not None:
            return []
        try:
            sock = connect(path, 0.0)
        except HostGone:
            return []
        with sock:
            sock.settimeout(timeout_s)
            try:
                send(sock, {"op": "stats", "path_contains": path_contains})
                answer, _ = receive(sock)
            except (HostGone, TimeoutError, ValueError):
                return []
        models: list[dict[str, Any]] = answer.get("models", [])
        return models

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, SIGKILL after `grace_s`, then whatever is left in its group; the socket
        folder goes too."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + grace_s
                while process.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            # Scanning /proc and reaping are blocking system calls: a thread does them.
            await asyncio.to_thread(_end_group, process, _GROUP_END_TIMEOUT_S)
            self._process = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


# SIGKILL takes effect at once; this only bounds a process stuck in the kernel (D state).
_GROUP_END_TIMEOUT_S = 5.0


def _end_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGKILL the host's process group until none of it is left, then reap the host; gives
    up (with a warning) after `timeout_s`, never blocks for ever."""
    group = process.pid
    deadline = time.monotonic() + timeout_s
    while left := processes_in_group(group):
        if time.monotonic() > deadline:
            log.warning("processes %s of the torch host's group outlived SIGKILL", left)
            break
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.warning("the torch host (pid %d) could not be reaped", group)


def is_listening(path: str) -> bool:
    """Whether a host answers at `path` right now (for tests and diagnostics)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class TorchHostExited(RuntimeExited):
    """The torch host ended when nobody asked it to (the runtime is restarted with it)."""

    def __init__(self, returncode: int | None, log_tail: str) -> None:
        self.returncode = returncode
        self.log_tail = log_tail
        RuntimeFailure.__init__(
            self, f"the torch host exited with status {returncode}; last log lines:\n{log_tail}"
        )
