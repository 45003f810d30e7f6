"""The gateway's HTTP server under abuse: huge headers, too many connections (real uvicorn)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from mme_local.serving import HttpLimits, uvicorn_config


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def server() -> Iterator[tuple[int, HttpLimits]]:
    limits = HttpLimits(max_header_bytes=8 * 1024, max_concurrency=3, keep_alive_timeout_s=30)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = uvicorn.Server(uvicorn_config(_hello, "127.0.0.1", port, limits))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port, limits
    http.should_exit = True
    thread.join(10)


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        # The server may answer and close before taking all of it.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)
        return _read_answer(connection)


def _read_answer(connection: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_small_request_is_served(server: tuple[int, HttpLimits]) -> None:
    port, _ = server
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_oversize_headers_get_431_and_the_connection_closes(
    server: tuple[int, HttpLimits],
) -> None:
    port, limits = server
    header = b"X-Pad: " + b"a" * (limits.max_header_bytes * 4) + b"\r\n"
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


def test_headers_that_never_end_get_431(server: tuple[int, HttpLimits]) -> None:
    port, limits = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        try:
            for _ in range(limits.max_header_bytes // 1024 + 8):
                connection.sendall(b"b" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _read_answer(connection).startswith(b"HTTP/1.1 431")


def test_connections_past_the_limit_get_503(server: tuple[int, HttpLimits]) -> None:
    port, limits = server
    held = [
        socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(limits.max_concurrency)
    ]
    try:
        for connection in held:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_answer(connection).startswith(b"HTTP/1.1 200")
        # Kept-alive connections fill the limit; the next one is turned away.
        answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
    finally:
        for connection in held:
            connection.close()


def test_keep_alive_is_bounded() -> None:
    limits = HttpLimits(max_header_bytes=1024, max_concurrency=2, keep_alive_timeout_s=7)
    config = uvicorn_config(_hello, "127.0.0.1", 0, limits)
    assert config.timeout_keep_alive == 7


def test_a_large_body_behind_small_headers_is_served(server: tuple[int, HttpLimits]) -> None:
    port, limits = server
    body = b"z" * (limits.max_header_bytes * 40)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    assert _exchange(port, head + body).startswith(b"HTTP/1.1 200")


def test_pipelined_requests_each_get_their_own_header_budget(
    server: tuple[int, HttpLimits],
) -> None:
    port, limits = server
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (limits.max_header_bytes // 2)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall((request + b"\r\n\r\n") * 4)
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 4:
            chunk = connection.recv(65536)
            assert chunk, answers
            answers += chunk
    assert b"431" not in answers
