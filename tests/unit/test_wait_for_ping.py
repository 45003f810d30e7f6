"""Waiting for a model server's /ping: what a restart waits on before requests flow again."""

from __future__ import annotations

import asyncio

import pytest

from mme_local.runtime.base import free_port, wait_for_ping
from mme_local.runtime.errors import RuntimeExited


async def _serve_pings(statuses: list[int]) -> tuple[asyncio.Server, list[str]]:
    """A server answering each GET /ping with the next status (the last one for ever)."""
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.readuntil(b"\r\n\r\n"):
            seen.append(request.split(b" ")[1].decode())
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            if reader.at_eof():
                break

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    return server, seen


async def test_waits_through_503s_until_a_200() -> None:
    server, seen = await _serve_pings([503, 503, 200])
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await wait_for_ping(f"http://127.0.0.1:{port}", 30, lambda: None)
    assert seen == ["/ping"] * 3


async def test_a_port_nobody_listens_on_is_waited_for_until_the_timeout() -> None:
    assert not await wait_for_ping(f"http://127.0.0.1:{free_port()}", 0.05, lambda: None)


async def test_a_server_that_died_is_reported_at_once() -> None:
    def dead() -> None:
        raise RuntimeExited(-9, "")

    with pytest.raises(RuntimeExited):
        await wait_for_ping(f"http://127.0.0.1:{free_port()}", 30, dead)
