"""The fault soak's parts: a moto S3 behind a fault proxy, and `mme-local up` in its own group.

The controller is a real `mme-local up` subprocess in its own process group, so its resident
memory is the gateway's alone and "left after stop" is a question about that one group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from bench.fault_proxy import FaultProxy
from mme_local.runtime.base import free_port
from mme_local.runtime.procs import command_line, descendants, processes_in_group, rss_bytes
from mme_local.store.embedded import EmbeddedS3
from mme_local.store.source import s3_client

CLI = str(Path(sys.executable).parent / "mme-local")
BUCKET = "soak"
PREFIX = "models/"


class S3Behind:
    """The embedded moto server with a FaultProxy in front; the controller only sees the proxy."""

    def __init__(self) -> None:
        self.moto = EmbeddedS3()
        self.proxy: FaultProxy | None = None

    def __enter__(self) -> S3Behind:
        asyncio.run(self.moto.start())
        assert self.moto.port is not None
        self.proxy = FaultProxy(self.moto.port)
        self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proxy is not None:
            self.proxy.close()
        asyncio.run(self.moto.stop())

    def publish(self, archives: list[Path]) -> None:
        """Upload straight to moto (not through the proxy): set-up is no part of the soak."""
        client: Any = s3_client(self.moto.url, "us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for archive in archives:
            client.upload_file(str(archive), BUCKET, PREFIX + archive.name)


@dataclass
class StopReport:
    exit_code: int
    left_in_group: list[int]
    log_tail: str


class Controller:
    """`mme-local up` on a free port, its log in a file, stopped with Ctrl-C (SIGINT)."""

    def __init__(
        self,
        workdir: Path,
        s3_url: str,
        capacity: int,
        ready_timeout_s: float,
        log_level: str = "warning",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "controller.log"
        self.args = [
            CLI, "up", "--port", str(self.port), "--cache-dir", str(workdir / "cache"),
            "--max-loaded-models", str(capacity), "--s3-endpoint", s3_url,
            "--model-data-url", f"s3://{BUCKET}/{PREFIX}",
            "--model-ready-timeout", str(ready_timeout_s), "--log-level", log_level,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 120) -> None:
        self._log = self.log_path.open("wb")
        # A clean environment for the settings: no mme.toml in cwd, no MME_LOCAL_* values.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MME_LOCAL_")}
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workdir,
            env=env,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mme-local up exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"mme-local up did not answer /ping:\n{self.log_tail()}")

    def triton_pid(self) -> int:
        for pid in descendants(self.pid):
            argv = command_line(pid)
            if argv and Path(argv[0]).name == "tritonserver":
                return pid
        raise RuntimeError("no tritonserver process below the controller")

    def rss(self) -> int:
        return rss_bytes([self.pid])

    def stop(self, timeout_s: float = 60) -> StopReport:
        process = self.process
        assert process is not None
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
        left = processes_in_group(process.pid)
        if process.poll() is None or left:
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        if self._log is not None:
            self._log.close()
        return StopReport(code, left, self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
