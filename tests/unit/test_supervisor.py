"""The supervisor with a fake model server: a crash is restarted at once, a failed restart is
retried with backoff until one works, and a crash loop backs off."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
        self.process: str | None = "exited"
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
    assert supervisor.exits == 1, "one death, however many attempts its restart took"


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


class CrashLoop:
    """Every start works, and every started server dies at once (a crash loop)."""

    def __init__(self) -> None:
        self.alive = True  # the first start, the emulator's, happened before supervision
        self.starts = 0
        self.url = "http://127.0.0.1:1"

    def check_alive(self) -> None:
        if self.alive:
            self.alive = False
            raise RuntimeExited(-9, "killed")

    async def stop(self) -> None:
        pass

    async def start(self) -> None:
        self.starts += 1
        self.alive = True

    def model_url(self, model_dir: Path) -> str:
        return str(model_dir)


def _recording_sleep(waits: list[float]) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    return sleep


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the supervisor never got there")


async def test_a_crash_is_restarted_at_once() -> None:
    server = FlakyServer(failures=0)
    waits: list[float] = []
    ups: list[str] = []
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: None,
        on_up=ups.append,
        poll_s=0.01,
        backoff_s=60.0,
        sleep=_recording_sleep(waits),
    )
    supervisor.start()
    await _until(lambda: bool(ups))
    await supervisor.stop()
    assert server.starts == 1
    assert waits == [], "no backoff before the first restart"


async def test_a_crash_loop_backs_off_more_and_more() -> None:
    server = CrashLoop()
    waits: list[float] = []
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: None,
        on_up=lambda url: None,
        poll_s=0.001,
        backoff_s=0.5,
        max_backoff_s=4.0,
        stable_s=3600.0,
        sleep=_recording_sleep(waits),
    )
    supervisor.start()
    await _until(lambda: server.starts >= 6)
    await supervisor.stop()
    # The first crash restarts at once; each repeat waits longer, up to the cap.
    assert waits[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]


class WatchedServer:
    """A server whose process end can be awaited, as the embedded runtime's can (pidfd)."""

    def __init__(self) -> None:
        self.alive = True
        self.ended = asyncio.Event()
        self.starts = 0
        self.waits = 0
        self.url = "http://127.0.0.1:1"

    def die(self) -> None:
        self.alive = False
        self.ended.set()

    def check_alive(self) -> None:
        if not self.alive:
            raise RuntimeExited(-9, "killed")

    async def wait_exit(self) -> None:
        self.waits += 1
        await self.ended.wait()

    async def stop(self) -> None:
        pass

    async def start(self) -> None:
        self.starts += 1
        self.alive = True
        self.ended = asyncio.Event()

    def model_url(self, model_dir: Path) -> str:
        return str(model_dir)


async def test_an_exit_is_noticed_when_it_happens_not_at_the_next_poll() -> None:
    server = WatchedServer()
    events: list[str] = []
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: events.append("down"),
        on_up=lambda url: events.append("up"),
        poll_s=3600.0,  # a poll would not come during this test
    )
    supervisor.start()
    await _until(lambda: server.waits == 1)
    server.die()
    await _until(lambda: events == ["down", "up"])
    # And the restarted server is watched the same way.
    await _until(lambda: server.waits == 2)
    server.die()
    await _until(lambda: events == ["down", "up"] * 2)
    await supervisor.stop()
    assert server.starts == 2


async def test_an_exit_nobody_reports_is_not_waited_on_in_a_busy_loop() -> None:
    """A server stopped on purpose ends, but check_alive has nothing to report: the
    supervisor goes back to its poll interval instead of re-arming the wait at once."""
    server = WatchedServer()
    server.ended.set()
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: None,
        on_up=lambda url: None,
        poll_s=3600.0,
    )
    supervisor.start()
    await _until(lambda: server.waits >= 1)
    for _ in range(50):
        await asyncio.sleep(0)
    await supervisor.stop()
    assert server.waits == 1
    assert supervisor.running


class UnwatchableServer(WatchedServer):
    """Where the exit can't be awaited after all (say, no pidfd on this kernel)."""

    async def wait_exit(self) -> None:
        self.waits += 1
        raise OSError(38, "Function not implemented")


async def test_a_wait_that_fails_falls_back_to_polling() -> None:
    server = UnwatchableServer()
    events: list[str] = []
    supervisor = RuntimeSupervisor(
        server,  # type: ignore[arg-type]
        on_down=lambda: events.append("down"),
        on_up=lambda url: events.append("up"),
        poll_s=0.01,
    )
    supervisor.start()
    await _until(lambda: server.waits == 1)
    server.die()
    await _until(lambda: events == ["down", "up"])
    await supervisor.stop()
    assert server.waits == 1, "tried once, then polled"
