"""A minimal keep-alive HTTP/1.1 client for the warm path to Triton's SageMaker port.

The gateway forwards every InvokeEndpoint over loopback to one known server that answers with
Content-Length bodies. A general-purpose client spends most of the gateway's per-request CPU
on machinery this hop doesn't need (measured: docs/benchmarks.md), so the invoke call uses
this pool: asyncio protocols, httptools' C parser, one request per connection at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools


class ConnectionLost(ConnectionError):
    """The server closed or reset the connection before the answer was complete."""


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.received_any = False
        self.closed = False
        self.keep_alive = True
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionLost(f"malformed HTTP answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionLost(f"connection closed by the server ({exc!r})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        answer = Answer(self.parser.get_status_code(), self._headers, b"".join(self._chunks))
        self._headers, self._chunks = {}, []
        self._cancel_timer()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(answer)

    def _fail(self, error: Exception) -> None:
        self._cancel_timer()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _time_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no complete answer in time"))
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def send(self, request: bytes, timeout_s: float) -> asyncio.Future[Answer]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.received_any = False
        self.waiter = loop.create_future()
        # A timer handle rather than asyncio.timeout/wait_for: no extra task per request.
        self._timer = loop.call_later(timeout_s, self._time_out)
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _encode_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Http1Pool:
    """Keep-alive connections to one host:port, used one request at a time each."""

    def __init__(self, host: str, port: int, max_idle: int = 64) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self._idle: deque[_Connection] = deque()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, self.host, self.port)
        return protocol

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> Answer:
        """Send one request; raises TimeoutError, ConnectionLost or OSError (connect)."""
        data = _encode_request(method, path, f"{self.host}:{self.port}", headers, body)
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            try:
                return await self._exchange(connection, data, timeout_s)
            except ConnectionLost:
                # A kept-alive connection the server had already closed: nothing of this
                # request was answered, so it goes again on a fresh connection.
                if connection.received_any:
                    raise
        connection = await asyncio.wait_for(self._connect(), min(timeout_s, 5.0))
        return await self._exchange(connection, data, timeout_s)

    async def _exchange(self, connection: _Connection, data: bytes, timeout_s: float) -> Answer:
        try:
            answer = await connection.send(data, timeout_s)
        except BaseException:
            connection.close()
            raise
        if connection.keep_alive and not connection.closed and len(self._idle) < self.max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
