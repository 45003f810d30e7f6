"""The container client waits `unload_settle_s` after a model's load answered before it sends
that model's unload: pytriton's Triton segfaults on an unload sent within milliseconds of the
same model's load answer. Other unloads go at once.

A small aiohttp server on loopback stands in for Triton and notes when each call arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mme_local.runtime.client import ContainerClient
from mme_local.runtime.dialect import ContainerDialect, TorchServeDialect, TritonDialect

A, B = "a" * 32, "b" * 32


class StampingTriton:
    def __init__(self) -> None:
        self.arrived: list[tuple[str, float]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/models", self.load)
        app.router.add_delete("/models/{name}", self.unload)
        return app

    async def load(self, request: web.Request) -> web.Response:
        name = (await request.json())["model_name"]
        self.arrived.append((f"load {name}", time.monotonic()))
        return web.json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        self.arrived.append((f"unload {request.match_info['name']}", time.monotonic()))
        return web.json_response({})

    def at(self, what: str) -> float:
        return next(t for name, t in self.arrived if name == what)


Connect = Callable[..., ContainerClient]


@pytest.fixture
async def triton() -> AsyncIterator[tuple[StampingTriton, Connect]]:
    """The fake Triton and a way to make clients of it (closed at the end)."""
    fake = StampingTriton()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    clients: list[ContainerClient] = []

    def connect(dialect: ContainerDialect | None = None) -> ContainerClient:
        clients.append(ContainerClient(f"http://127.0.0.1:{server.port}", dialect=dialect))
        return clients[-1]

    try:
        yield fake, connect
    finally:
        for client in clients:
            await client.aclose()
        await server.close()


async def test_an_unload_right_after_its_models_load_waits_the_settle_time(
    triton: tuple[StampingTriton, Connect],
) -> None:
    fake, connect = triton
    client = connect()
    await client.load(A, "/nowhere/a", "a.tar.gz")
    answered = time.monotonic()
    await client.unload(A, "a.tar.gz")
    assert fake.at(f"unload {A}") - answered >= TritonDialect.unload_settle_s
    # The next unload of it, with no load in between, goes at once.
    started = time.monotonic()
    await client.unload(A, "a.tar.gz")
    assert time.monotonic() - started < TritonDialect.unload_settle_s


async def test_an_unload_of_another_model_or_of_one_loaded_long_ago_goes_at_once(
    triton: tuple[StampingTriton, Connect],
) -> None:
    _, connect = triton
    client = connect()
    await client.load(A, "/nowhere/a", "a.tar.gz")
    started = time.monotonic()
    await client.unload(B, "b.tar.gz")  # B's load was not just now
    assert time.monotonic() - started < TritonDialect.unload_settle_s
    client._load_answered[A] -= TritonDialect.unload_settle_s  # as if loaded a while ago
    started = time.monotonic()
    await client.unload(A, "a.tar.gz")
    assert time.monotonic() - started < TritonDialect.unload_settle_s


async def test_an_unload_cancelled_while_it_waits_leaves_the_next_one_waiting(
    triton: tuple[StampingTriton, Connect],
) -> None:
    fake, connect = triton
    client = connect()
    await client.load(A, "/nowhere/a", "a.tar.gz")
    answered = time.monotonic()
    waiting = asyncio.create_task(client.unload(A, "a.tar.gz"))
    await asyncio.sleep(TritonDialect.unload_settle_s / 4)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not any(name.startswith("unload") for name, _ in fake.arrived)
    await client.unload(A, "a.tar.gz")
    assert fake.at(f"unload {A}") - answered >= TritonDialect.unload_settle_s


async def test_torchserve_unloads_at_once(triton: tuple[StampingTriton, Connect]) -> None:
    fake, connect = triton
    client = connect(TorchServeDialect())
    await client.load(A, "/nowhere/a", "a.tar.gz")
    answered = time.monotonic()
    await client.unload(A, "a.tar.gz")
    assert fake.at(f"unload {A}") - answered < TritonDialect.unload_settle_s
