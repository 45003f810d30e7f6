"""The supervisor with a fake model server: a failed restart is retried until one works."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mme_local.runtime.errors import RuntimeExited, RuntimeFailure
from mme_local.runtime.supervisor import RuntimeSupervisor


class FlakyServer:
    """Dies once; then its first `failures` starts fail.

    Like the real runtimes, it only reports an exit while it has a process: once stopped (or
    after a start that failed), `check_alive` has nothing to report.
    """

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.process = "exited"
        self.starts = 0
        self.url = "http://127.0.0.1:1"

    def check_alive(self) -> None:
        if self.process == "exited":
            raise RuntimeExited(-9, "killed")

    async def stop(self) -> None:
        self.process = None

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise RuntimeFailure("port in use")
        self.process = "running"
        self.url = f"http://127.0.0.1:{1000 + self.starts}"

    def model_url(self, model_dir: Path) -> str:
        return str(model_dir)


async def test_a_failed_restart_is_retried_with_backoff_until_it_works() -> None:
    server = FlakyServer(failures=3)
    events: list[str] = []
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1

    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: events.append("down"),
        on_up=lambda url: events.append(f"up {url}"),
        on_restart_attempt=attempt,
        poll_s=0.01,
        backoff_s=0.01,
        max_backoff_s=0.04,
    )
    supervisor.start()
    for _ in range(200):
        if supervisor.running and events[-1:] != ["down"] and events:
            break
        await asyncio.sleep(0.01)
    await supervisor.stop()
    assert events == ["down", "up http://127.0.0.1:1004"]
    assert attempts == 4 and server.starts == 4
    assert supervisor.running


async def test_requests_see_the_runtime_down_until_the_restart_succeeds() -> None:
    server = FlakyServer(failures=1000)
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: None,
        on_up=lambda url: None,
        poll_s=0.01,
        backoff_s=0.01,
        max_backoff_s=0.01,
    )
    supervisor.start()
    await asyncio.sleep(0.2)
    assert supervisor.running is False
    assert server.starts > 3, "it keeps trying"
    await supervisor.stop()
