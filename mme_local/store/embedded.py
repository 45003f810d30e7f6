"""The default store: a moto S3 server in a child process on loopback.

A child process (not a thread) keeps moto's global state apart from any `mock_aws` in the
caller's process and keeps S3 traffic off the gateway's interpreter.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx

from mme_local.runtime.base import free_port
from mme_local.runtime.procs import die_with_parent


class EmbeddedS3:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.port = self.port or free_port(self.host)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the embedded S3 (moto) exited with {self._process.returncode}"
                    )
                try:
                    await client.get(f"{self.url}/moto-api/")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"the embedded S3 (moto) did not answer on {self.url}")

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                process.kill()
        process.wait()
        self._process = None
