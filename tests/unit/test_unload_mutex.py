"""The model-list mutex of Triton 25.11's SageMaker front end, played by the container client:
invocations wait for unloads in flight, within their deadline and cancellably; a load's answer
and a listing wait too; unloads run one at a time and don't wait for invocations. `auto`
follows the imitated release.

A small aiohttp server on loopback stands in for Triton; its unload answers only when the test
lets it, and it logs the order in which calls reach it and leave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from mme_local.capacity.front_end import unload_blocks_invokes
from mme_local.config_file import SettingsError, load_settings
from mme_local.metrics import Metrics
from mme_local.metrics_reader import read_samples
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.errors import RuntimeTimeout
from mme_local.runtime.factory import build_container_client
from mme_local.runtime.model_list_mutex import ModelListMutex
from mme_local.settings import EmulatorSettings

NAME = "0" * 32
T = TypeVar("T")


class SlowTriton:
    """Unloads (and, when told, invocations) answer once their event is set."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.unload_may_end = asyncio.Event()
        self.invoke_may_end = asyncio.Event()
        self.invoke_may_end.set()
        self.arrived: dict[str, asyncio.Event] = {}
        self.calls: list[asyncio.Task[Any]] = []

    def call(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A client call running beside the test (ended before the server closes)."""
        task = asyncio.create_task(coro)
        self.calls.append(task)
        return task

    def _arrive(self, what: str) -> None:
        self.log.append(what)
        self.arrived.setdefault(what, asyncio.Event()).set()

    async def wait_for(self, what: str) -> None:
        await self.arrived.setdefault(what, asyncio.Event()).wait()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/models", self.load)
        app.router.add_get("/models", self.listing)
        app.router.add_delete("/models/{name}", self.unload)
        app.router.add_post("/models/{name}/invoke", self.invoke)
        return app

    async def load(self, request: web.Request) -> web.Response:
        self._arrive("load")
        return web.json_response({})

    async def listing(self, request: web.Request) -> web.Response:
        self._arrive("list")
        return web.json_response({"models": []})

    async def unload(self, request: web.Request) -> web.Response:
        self._arrive(f"unload {request.match_info['name']}")
        await self.unload_may_end.wait()
        self.log.append(f"unloaded {request.match_info['name']}")
        return web.json_response({})

    async def invoke(self, request: web.Request) -> web.Response:
        self._arrive("invoke")
        await self.invoke_may_end.wait()
        self.log.append("answered")
        return web.json_response({"outputs": []})


Connect = Callable[[Callable[[float], None] | None], ContainerClient]
"""A client of the fake Triton, playing the mutex unless given None (which hears its waits)."""


@pytest.fixture
async def triton() -> AsyncIterator[tuple[SlowTriton, Connect]]:
    fake = SlowTriton()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    clients: list[ContainerClient] = []

    def connect(on_held: Callable[[float], None] | None) -> ContainerClient:
        mutex = ModelListMutex(on_held) if on_held is not None else None
        clients.append(ContainerClient(f"http://127.0.0.1:{server.port}", model_list_mutex=mutex))
        return clients[-1]

    try:
        yield fake, connect
    finally:
        # A test that failed half-way leaves calls waiting: let them end, then close.
        fake.unload_may_end.set()
        fake.invoke_may_end.set()
        await asyncio.gather(*fake.calls, return_exceptions=True)
        for client in clients:
            await client.aclose()
        await server.close()


async def _during_unload(
    fake: SlowTriton, client: ContainerClient, name: str = "a"
) -> asyncio.Task[None]:
    unload = fake.call(client.unload(name, f"{name}.tar.gz"))
    await fake.wait_for(f"unload {name}")
    return unload


async def _settle() -> None:
    """Give a call that would not wait time to reach the server (a slow machine only makes a
    broken wait pass unnoticed, never a right one fail)."""
    await asyncio.sleep(0.2)


async def test_an_invocation_during_an_unload_waits_and_completes_after_it(
    triton: tuple[SlowTriton, Connect],
) -> None:
    fake, connect = triton
    held: list[float] = []
    client = connect(held.append)
    unload = await _during_unload(fake, client)
    invoke = fake.call(client.invoke(NAME, "hot.tar.gz", b"{}"))
    await _settle()
    assert not invoke.done()
    fake.unload_may_end.set()
    await unload
    await invoke
    assert fake.log == ["unload a", "unloaded a", "invoke", "answered"]
    assert len(held) == 1 and held[0] > 0


async def test_without_the_mutex_an_invocation_passes_an_unload(
    triton: tuple[SlowTriton, Connect],
) -> None:
    fake, connect = triton
    client = connect(None)
    unload = await _during_unload(fake, client)
    await client.invoke(NAME, "hot.tar.gz", b"{}")
    fake.unload_may_end.set()
    await unload
    assert fake.log == ["unload a", "invoke", "answered", "unloaded a"]


async def test_an_invocation_held_past_its_deadline_times_out_and_is_counted(
    triton: tuple[SlowTriton, Connect],
) -> None:
    fake, connect = triton
    metrics = Metrics()
    client = connect(metrics.count_unload_hold)
    unload = await _during_unload(fake, client)
    with pytest.raises(RuntimeTimeout, match=r"waited .* for a model unload to end"):
        await client.invoke(NAME, "hot.tar.gz", b"{}", timeout_s=0.05)
    fake.unload_may_end.set()
    await unload
    assert "invoke" not in fake.log
    samples = read_samples(metrics.render().decode())
    assert samples["mme_invocations_held_by_unload_total"] == 1
    assert samples["mme_invocation_unload_hold_seconds_count"] == 1
    assert metrics.held_by_unload_count() == 1


async def test_a_cancelled_wait_leaves_the_mutex_working(
    triton: tuple[SlowTriton, Connect],
) -> None:
    fake, connect = triton
    held: list[float] = []
    client = connect(held.append)
    unload = await _during_unload(fake, client)
    waiting = fake.call(client.invoke(NAME, "hot.tar.gz", b"{}"))
    await _settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    fake.unload_may_end.set()
    await unload
    await client.invoke(NAME, "hot.tar.gz", b"{}")
    assert fake.log == ["unload a", "unloaded a", "invoke", "answered"]
    assert len(held) == 1  # the cancelled wait; the later call found the mutex free


async def test_unloads_run_one_at_a_time(triton: tuple[SlowTriton, Connect]) -> None:
    fake, connect = triton
    client = connect(lambda _: None)
    first = await _during_unload(fake, client, "a")
    second = fake.call(client.unload("b", "b.tar.gz"))
    await _settle()
    assert "unload b" not in fake.log
    fake.unload_may_end.set()
    await asyncio.gather(first, second)
    assert fake.log == ["unload a", "unloaded a", "unload b", "unloaded b"]


async def test_an_unload_does_not_wait_for_invocations_in_flight(
    triton: tuple[SlowTriton, Connect],
) -> None:
    fake, connect = triton
    fake.invoke_may_end.clear()
    fake.unload_may_end.set()
    client = connect(lambda _: None)
    invoke = fake.call(client.invoke(NAME, "hot.tar.gz", b"{}"))
    await fake.wait_for("invoke")
    await client.unload("a", "a.tar.gz")
    fake.invoke_may_end.set()
    await invoke
    assert fake.log == ["invoke", "unload a", "unloaded a", "answered"]


async def test_a_load_answers_and_a_listing_starts_only_after_the_unload(
    triton: tuple[SlowTriton, Connect], tmp_path: Path
) -> None:
    fake, connect = triton
    client = connect(lambda _: None)
    unload = await _during_unload(fake, client)
    load = fake.call(client.load("b" * 32, str(tmp_path), "b.tar.gz"))
    listing = fake.call(client.list_models())
    await fake.wait_for("load")
    await _settle()
    assert not load.done() and "list" not in fake.log
    fake.unload_may_end.set()
    await asyncio.gather(unload, load, listing)
    assert fake.log == ["unload a", "load", "unloaded a", "list"]


# ----- the switch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "switch", "stack", "expected"),
    [
        ("24.09", "auto", "triton", False),
        ("25.10", "auto", "triton", False),
        ("25.11", "auto", "triton", True),
        ("26.03", "auto", "triton", True),
        ("25.12", "auto", "torchserve", False),
        ("24.09", "on", "triton", True),
        ("25.12", "off", "triton", False),
    ],
)
def test_the_switch_resolves(version: str, switch: str, stack: str, expected: bool) -> None:
    settings = EmulatorSettings(
        triton_version=version,
        unload_blocks_invokes=switch,  # type: ignore[arg-type]
        stack=stack,  # type: ignore[arg-type]
    )
    assert settings.unloads_block_invokes() is expected
    server = SimpleNamespace(url="http://127.0.0.1:1")
    client = build_container_client(settings, server)  # type: ignore[arg-type]
    assert (client.model_list_mutex is not None) is expected


@given(
    year=st.integers(10, 99),
    month=st.integers(1, 12),
    switch=st.sampled_from(["auto", "on", "off"]),
)
def test_auto_follows_the_release_and_on_off_win(year: int, month: int, switch: str) -> None:
    version = f"{year:02d}.{month:02d}"
    settings = EmulatorSettings(triton_version=version, unload_blocks_invokes=switch)  # type: ignore[arg-type]
    expected = {"on": True, "off": False, "auto": (year, month) >= (25, 11)}[switch]
    assert settings.unloads_block_invokes() is expected
    assert unload_blocks_invokes(version) is ((year, month) >= (25, 11))


def test_up_reads_the_release_deploy_uses(tmp_path: Path) -> None:
    config = tmp_path / "mme.toml"
    config.write_text('[deploy]\ntriton_version = "25.12"\n')
    settings = load_settings(EmulatorSettings, {}, config, {})
    assert settings.triton_version == "25.12"
    assert settings.unloads_block_invokes()
    off = load_settings(EmulatorSettings, {}, config, {"MME_LOCAL_UNLOAD_BLOCKS_INVOKES": "off"})
    assert not off.unloads_block_invokes()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"triton_version": "latest"}, "--triton-version: 'latest' is not a Triton container"),
        ({"unload_blocks_invokes": "yes"}, "'yes' is not one of: auto, on, off"),
        (
            {"unload_blocks_invokes": "on", "stack": "torchserve"},
            "the torchserve stack has no such mutex",
        ),
    ],
)
def test_bad_values_get_one_line(flags: dict[str, str], words: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=words):
        load_settings(EmulatorSettings, flags, tmp_path / "none.toml", {}, read_file=False)
