"""Which Triton version decides, and whose log is read: this start's binary, never an earlier
run's log (a stand-in binary that prints Triton's banner plays tritonserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mme_local.runtime.base import TritonSettings
from mme_local.runtime.embedded import EmbeddedTriton, probe_version
from mme_local.runtime.provision import UnsupportedTriton
from tests.fake_triton import fake_install


def _banner(version: str) -> bytes:
    return f"| server_version | {version} |\n".encode()


@pytest.fixture
async def stop_after() -> AsyncIterator[list[EmbeddedTriton]]:
    started: list[EmbeddedTriton] = []
    yield started
    for server in started:
        await server.stop()


async def test_an_earlier_runs_log_does_not_vouch_for_a_newer_binary(
    tmp_path: Path, stop_after: list[EmbeddedTriton]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "tritonserver.log").write_bytes(_banner("2.51.0") * 3)
    server = EmbeddedTriton(fake_install(tmp_path / "triton", "2.70.0"), work, TritonSettings())
    stop_after.append(server)
    with pytest.raises(UnsupportedTriton, match=r"2\.70\.0"):
        await server.start()


async def test_an_earlier_runs_newer_triton_does_not_refuse_this_one(
    tmp_path: Path, stop_after: list[EmbeddedTriton]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "tritonserver.log").write_bytes(_banner("2.70.0"))
    server = EmbeddedTriton(fake_install(tmp_path / "triton", "2.51.0"), work, TritonSettings())
    stop_after.append(server)
    await server.start()
    assert server.version == "2.51.0"


async def test_each_start_writes_a_fresh_log_and_keeps_the_last_one(
    tmp_path: Path, stop_after: list[EmbeddedTriton]
) -> None:
    work = tmp_path / "work"
    server = EmbeddedTriton(fake_install(tmp_path / "triton", "2.51.0"), work, TritonSettings())
    stop_after.append(server)
    await server.start()
    await server.stop()
    first = (work / "tritonserver.log").read_bytes()
    assert first.count(b"server_version") == 1
    await server.start()
    assert (work / "tritonserver.log").read_bytes().count(b"server_version") == 1
    assert (work / "tritonserver.log.1").read_bytes() == first


async def test_a_recorded_version_is_checked_before_anything_starts(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton", "2.70.0", recorded_version="2.70.0")
    server = EmbeddedTriton(install, tmp_path / "work", TritonSettings())
    with pytest.raises(UnsupportedTriton):
        await server.start()
    assert server.pid is None
    assert not (tmp_path / "work" / "tritonserver.log").exists(), "it was started"


def test_the_probe_asks_the_binary(tmp_path: Path) -> None:
    assert probe_version(fake_install(tmp_path / "triton", "2.49.1")) == "2.49.1"
