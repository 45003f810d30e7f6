"""The profiler's measurer against a fake emulator: how many times it measures again when the
model server dies, and that a failure on a live server is the measurement's own, raised at
once. (The real Triton's deaths are in tests/integration/test_capacity_profile.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profiler import EMPTY_MODEL, _Measurer


@dataclass
class FakeSupervisor:
    running: bool = True
    exits: int = 0


@dataclass
class FakeEmulator:
    supervisor: FakeSupervisor = field(default_factory=FakeSupervisor)
    server: None = None


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


def test_a_failure_while_the_server_stays_up_is_raised_without_a_retry() -> None:
    failure = CapacityError("the sample request failed on m: 400")
    measurer, _, measured = _measurer([], failure)
    with pytest.raises(CapacityError, match="the sample request failed"):
        asyncio.run(measurer.measure("m.tar.gz", None))
    assert measured == [EMPTY_MODEL, "m.tar.gz"]


def test_a_server_that_does_not_come_back_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mme_local.capacity.profiler._RESTART_WAIT_S", 0.1)
    measurer, _, measured = _measurer([])
    measurer.emulator.supervisor.running = False
    with pytest.raises(CapacityError, match=r"did not come back within 0 s to measure m\b"):
        asyncio.run(measurer.measure("m.tar.gz", None, "m"))
    assert measured == []
