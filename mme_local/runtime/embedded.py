"""The tritonserver binary run as a supervised child process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from mme_local.runtime.backend_dir import prepare_backend_dir, python_environment
from mme_local.runtime.base import (
    TritonSettings,
    free_port,
    triton_arguments,
    triton_environment,
)
from mme_local.runtime.errors import RuntimeExited
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.local_triton import LocalTriton
from mme_local.runtime.logs import read_version
from mme_local.runtime.procs import (
    descendants,
    die_with_parent,
    exit_status,
    processes_in_group,
    serving_model,
)
from mme_local.runtime.provision import TritonInstall, check_load_paths
from mme_local.runtime.torch_host_process import TorchHostExited, TorchHostProcess

log = logging.getLogger(__name__)


class EmbeddedTriton(LocalTriton):
    """tritonserver started the way SageMaker's `serve` starts it for an MME.

    Triton runs in its own process group so that stopping it also ends every Python backend
    stub it started, even after Triton itself was killed. The torch host that holds every
    TorchScript module starts, dies (taking the runtime down for a restart) and stops with it.
    """

    def __init__(self, install: TritonInstall, work_dir: Path, settings: TritonSettings) -> None:
        super().__init__(settings, work_dir / "tritonserver.log", install.version)
        self.install = install
        self.work_dir = work_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._probed = False
        self.torch_host = TorchHostProcess(work_dir / "torch-host.log")
        self._shm_prefix: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self, port: int) -> list[str]:
        repository = self.work_dir / "placeholder-repository"
        return [str(self.install.binary), *triton_arguments(self.settings, port, str(repository))]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(python_environment(self.install))
        env.update(triton_environment())
        env.update(self.torch_host.environment())
        return env

    async def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._version is None and not self._probed:
            # Nothing recorded what this binary is (a Triton on PATH or in
            # $MME_LOCAL_TRITON_HOME without TRITON_VERSION): ask the binary itself, once.
            self._probed = True
            self._version = await asyncio.to_thread(probe_version, self.install)
        self._check_version()
        backend_dir = await asyncio.to_thread(self._prepare_work_dir)
        self._port = self.settings.port or free_port()
        # Each start names its stubs' shared-memory regions, so that a stop can remove what a
        # killed Triton leaves in /dev/shm (RAM, kept until the machine restarts).
        self._shm_prefix = f"mme_local_{os.getpid()}_{uuid.uuid4().hex[:12]}_"
        command = [
            *self.command(self._port),
            f"--backend-directory={backend_dir}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]
        log.info("starting %s", " ".join(command))
        self._stopping = False
        self.torch_host.start()
        try:
            with self.log_path.open("wb") as log_file:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=self.environment(),
                    cwd=self.work_dir,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
        except BaseException:
            await self.torch_host.stop(self.settings.stop_grace_s)
            raise
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    def _prepare_work_dir(self) -> Path:
        """The folders Triton runs with, and a fresh log; file copies, so run in a thread."""
        remove_orphaned_shared_memory()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "placeholder-repository").mkdir(exist_ok=True)
        self._fresh_log()
        return prepare_backend_dir(self.install, self.work_dir / "backends")

    def _check_version(self) -> None:
        # A Triton found on PATH or in $MME_LOCAL_TRITON_HOME may only say its version here.
        check_load_paths(self._version, self.install.binary)

    async def wait_exit(self) -> None:
        """Return when the running tritonserver or its torch host ends, without polling: a
        pidfd becomes readable then. The processes are left to `check_alive` (or `stop`) to
        reap."""
        process = self._process
        # poll() reaps an exited child, so a PID not yet reaped is still ours: no reuse race.
        if process is None or process.poll() is not None:
            return
        if self.torch_host.returncode() is not None:
            return
        pids = [process.pid]
        host_pid = self.torch_host.pid
        if host_pid is not None:
            pids.append(host_pid)
        pidfds: list[int] = []
        try:
            for pid in pids:
                pidfds.append(os.pidfd_open(pid))
            loop = asyncio.get_running_loop()
            ended = loop.create_future()
            for pidfd in pidfds:
                loop.add_reader(pidfd, _resolve, ended)
            try:
                await ended
            finally:
                for pidfd in pidfds:
                    loop.remove_reader(pidfd)
        finally:
            for pidfd in pidfds:
                os.close(pidfd)

    def check_alive(self) -> None:
        process = self._process
        if process is None or self._stopping:
            return
        returncode = exit_status(process)
        if returncode is not None:
            raise RuntimeExited(returncode, self.log_tail())
        host_returncode = self.torch_host.returncode()
        if host_returncode is not None:
            raise TorchHostExited(host_returncode, self.torch_host.log_tail())

    @property
    def open_port(self) -> int | None:
        # Triton 2.51 binds its SageMaker port on 0.0.0.0; there is no flag to change it.
        return self._port

    @property
    def uses_gpus(self) -> bool:
        return bool(visible_gpus())

    def model_process_ids(self, model_name: str) -> list[int] | None:
        return serving_model(self.process_ids(), model_name)

    def hosted_model_bytes(self, model_name: str) -> int | None:
        """Host memory of the model's tensors in the torch host; None if it holds none."""
        held = self.torch_host.model_bytes(model_name)
        return None if held is None else held[0]

    def process_ids(self) -> list[int]:
        if self._process is None or self._process.poll() is not None:
            return []
        return [self._process.pid, *descendants(self._process.pid), *self.torch_host.process_ids()]

    def model_url(self, model_dir: Path) -> str:
        return str(model_dir)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; then end whatever is left in the group."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.settings.stop_grace_s
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        # Scanning /proc and reaping are blocking system calls: a thread does them.
        await asyncio.to_thread(_end_group, process, _GROUP_END_TIMEOUT_S)
        self._process = None
        if self._shm_prefix is not None:
            await asyncio.to_thread(remove_shared_memory, self._shm_prefix)
        await self.torch_host.stop(self.settings.stop_grace_s)


SHARED_MEMORY = Path("/dev/shm")


def remove_shared_memory(prefix: str, folder: Path = SHARED_MEMORY) -> list[str]:
    """Remove the shared-memory regions named `prefix...` (once their processes are gone);
    returns the names removed."""
    removed = []
    for region in folder.glob(f"{prefix}*"):
        try:
            region.unlink()
        except FileNotFoundError:
            continue
        removed.append(region.name)
    if removed:
        log.info("removed %d shared-memory region(s) the model server left", len(removed))
    return removed


def remove_orphaned_shared_memory(folder: Path = SHARED_MEMORY) -> list[str]:
    """Remove regions of earlier mme-local processes that are gone (killed with SIGKILL, so
    their stop never ran); a region whose process still runs, or may, is left alone."""
    removed = []
    for region in folder.glob("mme_local_*_*"):
        owner = region.name.split("_")[2]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        try:
            region.unlink()
        except FileNotFoundError:
            continue
        removed.append(region.name)
    if removed:
        log.info("removed %d shared-memory region(s) of earlier runs", len(removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# SIGKILL takes effect at once; this only bounds a process stuck in the kernel (D state).
_GROUP_END_TIMEOUT_S = 5.0


def _end_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGKILL the process group `process` leads until none of it is left, then reap the leader.

    Backend stubs are Triton's children, not ours, so they can't be waited for: /proc says
    when they are gone. Gives up (with a warning) after `timeout_s`, never blocks for ever.
    """
    group = process.pid
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        # Kill before looking: after a crash the stubs are still there, and each look is a
        # /proc scan, so a restart would wait on one scan and a pause for nothing.
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            break  # nothing left in the group, not even a zombie leader
        if not (left := processes_in_group(group)):
            break
        if time.monotonic() > deadline:
            log.warning("processes %s of tritonserver's group outlived SIGKILL", left)
            break
        # A killed stub is gone in milliseconds: look again soon, then less often.
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.warning("tritonserver (pid %d) could not be reaped", group)


def probe_version(install: TritonInstall, timeout_s: float = 30.0) -> str | None:
    """Start the binary with no front ends just long enough to read its version banner.

    Triton 2.51 has no `--version` flag; the banner of a start of its own, written to a fresh
    scratch log, is the binary's own word. Blocking (up to `timeout_s`): call it from a thread.
    """
    with tempfile.TemporaryDirectory(prefix="mme-local-probe-") as scratch:
        library_path = os.pathsep.join(
            [*(str(path) for path in install.library_dirs), os.environ.get("LD_LIBRARY_PATH", "")]
        )
        repository = Path(scratch) / "repository"
        repository.mkdir()
        command = [
            str(install.binary), f"--model-repository={repository}", "--allow-http=false",
            "--allow-grpc=false", "--allow-metrics=false", "--model-control-mode=explicit",
            "--exit-on-error=false",
        ]  # fmt: skip
        log_path = Path(scratch) / "probe.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LD_LIBRARY_PATH": library_path},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        found: str | None = None
        try:
            while found is None and time.monotonic() < deadline:
                exited = process.poll() is not None
                found = read_version(log_path)
                if exited:
                    break
                time.sleep(0.02)
        finally:
            _end_group(process, _GROUP_END_TIMEOUT_S)
        return found
