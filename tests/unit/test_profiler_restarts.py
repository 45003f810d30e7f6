"""The profiler's measurer against a fake emulator: how many times it measures again when the
model server dies, and that a failure on a live server is the measurement's own, raised at
once. (The real Triton's deaths are in tests/integration/test_capacity_profile.py.)"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import pytest

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profiler import EMPTY_MODEL, _Measurer
from mme_local.runtime.errors import RuntimeExited


@dataclass
class FakeSupervisor:
    running: bool = True
    exits: int = 0


@dataclass
class FakeServer:
    dead: bool = False

    def check_alive(self) -> None:
        if self.dead:
            raise RuntimeExited(-11, "Signal (11) received.")


@dataclass
class FakeEmulator:
    supervisor: FakeSupervisor = field(default_factory=FakeSupervisor)
    server: FakeServer = field(default_factory=FakeServer)


def _measurer(
    deaths: list[bool], failure: Exception | None = None
) -> tuple[_Measurer, list[str], list[str]]:
    """A measurer whose n-th measurement kills the server if `deaths[n]`."""
    emulator = FakeEmulator()
    said: list[str] = []
    measured: list[str] = []
    measurer = _Measurer(emulator, None, said.append)  # type: ignore[arg-type]

    async def measure_once(target: str, sample: object) -> str:
        measured.append(target)
        if deaths and deaths.pop(0):
            emulator.supervisor.exits += 1  # died, and the supervisor restarted it at once
        if failure is not None and target != EMPTY_MODEL:
            raise failure
        return target

    measurer._measure_once = measure_once  # type: ignore[assignment,method-assign]
    return measurer, said, measured


def _dies_then_restarts(measurer: _Measurer, dead_in_s: float, back_in_s: float) -> None:
    """From inside the loop: the server's process is seen dead `dead_in_s` from now (0: at
    once), and the supervisor has restarted it `back_in_s` from now."""
    emulator = cast(FakeEmulator, measurer.emulator)
    server, supervisor = emulator.server, emulator.supervisor
    loop = asyncio.get_running_loop()

    def restart() -> None:
        server.dead = False
        supervisor.exits += 1

    if dead_in_s:
        loop.call_later(dead_in_s, setattr, server, "dead", True)
    else:
        server.dead = True
    loop.call_later(back_in_s, restart)


def test_a_measurement_is_taken_again_on_the_restarted_server_after_a_warm_up() -> None:
    measurer, said, measured = _measurer([False, True, False, False])
    result: object = asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert result == "m.tar.gz"
    assert measured == [EMPTY_MODEL, "m.tar.gz", EMPTY_MODEL, "m.tar.gz"]
    assert said[1] == (
        "the model server died while measuring m; measuring it again on the restarted server (2/3)"
    )


def test_a_warmed_server_that_stays_up_is_not_warmed_again() -> None:
    measurer, _, measured = _measurer([])
    asyncio.run(measurer.measure("a.tar.gz", None))
    asyncio.run(measurer.measure("b.tar.gz", None))
    assert measured == [EMPTY_MODEL, "a.tar.gz", "b.tar.gz"]


def test_a_server_that_dies_on_every_try_fails_the_profile_naming_the_model() -> None:
    measurer, _, measured = _measurer([False, True] * 3)
    with pytest.raises(CapacityError, match=r"died 3 times while measuring m;"):
        asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert measured.count("m.tar.gz") == 3


def test_a_failure_while_the_server_stays_up_is_raised_without_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mme_local.capacity.profiler._DEATH_GRACE_S", 0.2)
    failure = CapacityError("the sample request failed on m: 400")
    measurer, _, measured = _measurer([], failure)
    started = time.monotonic()
    with pytest.raises(CapacityError, match="the sample request failed"):
        asyncio.run(measurer.measure("m.tar.gz", None))
    assert measured == [EMPTY_MODEL, "m.tar.gz"]
    assert time.monotonic() - started >= 0.2, "raised only once the server was given its grace"


def test_a_failure_whose_server_death_shows_a_moment_later_is_taken_again() -> None:
    """A crashing Triton's first thread can end (and the request on it fail) while its other
    threads still run: the process can't be seen dead yet. The failure is not blamed on the
    sample while the server may still turn out dead."""
    measurer, said, measured = _measurer([])

    async def measure_once(target: str, sample: object) -> str:
        measured.append(target)
        if target != EMPTY_MODEL and measured.count(target) == 1:
            _dies_then_restarts(measurer, dead_in_s=0.2, back_in_s=0.3)
            raise CapacityError("the sample request failed on m: connection reset")
        return target

    measurer._measure_once = measure_once  # type: ignore[assignment,method-assign]
    result: object = asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert result == "m.tar.gz"
    assert measured == [EMPTY_MODEL, "m.tar.gz", EMPTY_MODEL, "m.tar.gz"]
    assert "died while measuring m" in said[1]


def test_a_server_that_does_not_come_back_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mme_local.capacity.profiler._RESTART_WAIT_S", 0.1)
    measurer, _, measured = _measurer([])
    measurer.emulator.supervisor.running = False
    with pytest.raises(CapacityError, match=r"did not come back within 0 s to measure m\b"):
        asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert measured == []


def test_a_measurement_that_failed_because_the_server_died_is_taken_again() -> None:
    """The sample request is refused by a dead server: not the --sample's fault."""
    measurer, _, measured = _measurer([])
    emulator = measurer.emulator
    calls = 0

    async def measure_once(target: str, sample: object) -> str:
        nonlocal calls
        calls += 1
        measured.append(target)
        if calls == 2:
            emulator.supervisor.exits += 1
            raise CapacityError("the sample request failed on m: connection refused")
        return target

    measurer._measure_once = measure_once  # type: ignore[assignment,method-assign]
    result: object = asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert result == "m.tar.gz"
    assert measured == [EMPTY_MODEL, "m.tar.gz", EMPTY_MODEL, "m.tar.gz"]


def test_an_exit_the_supervisor_is_yet_to_notice_counts_and_is_waited_out() -> None:
    """The server is dead (its process ended) but the supervisor still says it runs: the
    measurement is not kept, and the next try waits for the supervisor's restart."""
    measurer, said, measured = _measurer([])

    async def measure_once(target: str, sample: object) -> str:
        measured.append(target)
        if target != EMPTY_MODEL and measured.count(target) == 1:
            _dies_then_restarts(measurer, dead_in_s=0.0, back_in_s=0.2)
        return target

    measurer._measure_once = measure_once  # type: ignore[assignment,method-assign]
    asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert measured == [EMPTY_MODEL, "m.tar.gz", EMPTY_MODEL, "m.tar.gz"]
    assert "died while measuring m" in said[1]


def test_a_death_during_the_warm_up_warms_the_restarted_server_up_again() -> None:
    measurer, said, measured = _measurer([True, False, False])
    result: object = asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert result == "m.tar.gz"
    assert measured == [EMPTY_MODEL, EMPTY_MODEL, "m.tar.gz"], "not measured on the dead one"
    assert said.count("warming up the runtime with an empty TorchScript model") == 2
