"""The warm-path HTTP/1.1 pool against a small real server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from mme_local.runtime.http1 import ConnectionLost, Http1Pool


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    close_after_answer: bool = False
    delay_s: float = 0.0


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                request = await _read_request(reader)
                assert request is not None
                state.requests.append(request)
                await asyncio.sleep(state.delay_s)
                body = b'{"echo": %d}' % len(request)
                extra = b"Connection: close\r\n" if state.close_after_answer else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"X-Amzn-SageMaker-Custom-Attributes: a=b\r\n"
                    + extra
                    + b"Content-Length: %d\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
                if state.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state


async def test_answers_are_parsed_and_connections_kept_alive(server: Server) -> None:
    pool = Http1Pool("127.0.0.1", server.port)
    for _ in range(5):
        answer = await pool.request("POST", "/models/m/invoke", {"X-A": "1"}, b"payload", 5.0)
        assert answer.status == 200
        assert answer.body.startswith(b'{"echo":')
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-amzn-sagemaker-custom-attributes"] == "a=b"
    assert server.connections == 1
    assert server.requests[0].endswith(b"\r\n\r\npayload")
    assert b"X-A: 1\r\n" in server.requests[0]
    pool.close()


async def test_concurrent_requests_use_separate_connections(server: Server) -> None:
    server.delay_s = 0.05
    pool = Http1Pool("127.0.0.1", server.port)
    answers = await asyncio.gather(
        *(pool.request("POST", "/x", {}, b"%d" % i, 5.0) for i in range(8))
    )
    assert [a.status for a in answers] == [200] * 8
    assert server.connections == 8
    pool.close()


async def test_connection_close_is_honoured_and_requests_go_on(server: Server) -> None:
    server.close_after_answer = True
    pool = Http1Pool("127.0.0.1", server.port)
    for _ in range(3):
        assert (await pool.request("GET", "/ping", {}, b"", 5.0)).status == 200
    assert server.connections == 3
    pool.close()


async def test_a_stale_idle_connection_is_replaced(server: Server) -> None:
    pool = Http1Pool("127.0.0.1", server.port)
    await pool.request("GET", "/ping", {}, b"", 5.0)
    # The server drops the idle connection without telling us yet.
    for connection in list(pool._idle):
        assert connection.transport is not None
        connection.transport.abort()
        connection.closed = False
    assert (await pool.request("GET", "/ping", {}, b"", 5.0)).status == 200
    pool.close()


async def test_timeout_and_refused_connections(server: Server) -> None:
    server.delay_s = 1.0
    pool = Http1Pool("127.0.0.1", server.port)
    with pytest.raises(TimeoutError):
        await pool.request("POST", "/slow", {}, b"", 0.2)
    assert not pool._idle, "a timed-out connection is not reused"
    closed = Http1Pool("127.0.0.1", 1)
    with pytest.raises(OSError):
        await closed.request("GET", "/ping", {}, b"", 1.0)


async def test_header_values_cannot_inject_lines(server: Server) -> None:
    pool = Http1Pool("127.0.0.1", server.port)
    with pytest.raises(ValueError, match="line break"):
        await pool.request("POST", "/x", {"X-A": "a\r\nX-Evil: 1"}, b"", 1.0)


def test_connection_lost_is_a_connection_error() -> None:
    assert issubclass(ConnectionLost, ConnectionError)


def test_the_pool_works_on_uvloop_as_the_gateway_runs_it() -> None:
    import uvloop

    async def exchange() -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with listener:
            pool = Http1Pool("127.0.0.1", listener.sockets[0].getsockname()[1])
            answer = await pool.request("GET", "/ping", {}, b"", 5.0)
            pool.close()
            return answer.status

    assert uvloop.run(exchange()) == 204
