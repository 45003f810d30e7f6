"""The gateway's HTTP server under abuse: huge headers, silent and slow sockets, too many
requests at once (real uvicorn, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from mme_local.gateway.http_protocol import LimitedHttpToolsProtocol
from mme_local.serving import HttpLimits, uvicorn_config
from mme_local.settings import EmulatorSettings

# Far above any timeout under test: a socket call that waits this long means nobody closed it.
PATIENCE_S = 15.0


class _App:
    """`/hold` waits until released (a request in progress), `/echo` reads its body first;
    anything else answers at once."""

    def __init__(self) -> None:
        self.held = 0
        self.release = threading.Event()
        self.disconnects = 0
        self.big_done = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/big":
            # Far more than socket buffers hold: the send stalls unless the client reads.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(64):
                await send(
                    {"type": "http.response.body", "body": b"x" * 1024 * 1024, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b""})
            self.big_done += 1
            return
        if scope["path"] == "/hold":
            self.held += 1
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        if scope["path"] == "/echo":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects += 1
                    return
                if not message.get("more_body", False):
                    break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})


@contextlib.contextmanager
def _serving(limits: HttpLimits, app: _App | None = None) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = uvicorn.Server(uvicorn_config(app or _App(), "127.0.0.1", port, limits))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        if app is not None:
            app.release.set()
        http.should_exit = True
        thread.join(10)


LIMITS = HttpLimits(
    max_header_bytes=8 * 1024, max_concurrency=3, keep_alive_timeout_s=30, header_timeout_s=30
)


@pytest.fixture
def server() -> Iterator[tuple[int, HttpLimits]]:
    with _serving(LIMITS) as port:
        yield port, LIMITS


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


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)


def _closed_by_server(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk


def test_silent_and_slow_sockets_do_not_starve_requests() -> None:
    # Timeouts far longer than the test: only the count of requests in progress may decide.
    with _serving(LIMITS) as port:
        silent = [_connect(port) for _ in range(LIMITS.max_concurrency * 4)]
        half = [_connect(port) for _ in range(LIMITS.max_concurrency)]
        kept = [_connect(port) for _ in range(LIMITS.max_concurrency)]
        try:
            for connection in half:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            for connection in kept:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _read_answer(connection).startswith(b"HTTP/1.1 200")
            for _ in range(5):
                answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        finally:
            for connection in silent + half + kept:
                connection.close()


def test_a_thousand_silent_sockets_leave_the_defaults_serving() -> None:
    limits = HttpLimits.of(EmulatorSettings())
    assert limits.max_concurrency <= 1000, "the test must reach the default limit"
    with _serving(limits) as port:
        silent = [_connect(port) for _ in range(1000)]
        try:
            answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        finally:
            for connection in silent:
                connection.close()


def test_the_settings_reach_the_server() -> None:
    settings = EmulatorSettings(
        header_limit_bytes=4096, max_concurrency=7, keep_alive_timeout_s=2, header_timeout_s=3
    )
    config = uvicorn_config(_App(), "127.0.0.1", 0, HttpLimits.of(settings))
    assert config.limit_concurrency is None, "uvicorn's own limit would count idle sockets"
    assert config.timeout_keep_alive == 2
    protocol = config.http
    assert isinstance(protocol, type) and issubclass(protocol, LimitedHttpToolsProtocol)
    assert (protocol.max_header_bytes, protocol.header_timeout_s, protocol.max_requests) == (
        4096,
        3,
        7,
    )


def test_requests_in_progress_past_the_limit_get_503() -> None:
    app = _App()
    with _serving(LIMITS, app) as port:
        held = [_connect(port) for _ in range(LIMITS.max_concurrency)]
        try:
            for connection in held:
                connection.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + PATIENCE_S
            while app.held < LIMITS.max_concurrency:
                assert time.monotonic() < deadline, "the held requests never started"
                time.sleep(0.01)
            answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
            app.release.set()
            for connection in held:
                assert _read_answer(connection).startswith(b"HTTP/1.1 200")
            # The same connections, now idle, hold nothing.
            answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        finally:
            for connection in held:
                connection.close()


def test_a_connection_that_never_sends_a_request_is_closed() -> None:
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=0.3, header_timeout_s=30)
    with _serving(limits) as port, _connect(port) as connection:
        assert _closed_by_server(connection) == b""


def test_headers_trickled_past_the_header_timeout_get_408_and_a_close() -> None:
    # Each byte comes well within the idle timeout; only the deadline for the whole head
    # can end this.
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=30, header_timeout_s=0.5)
    with _serving(limits) as port, _connect(port) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        connection.settimeout(0.1)
        answer = b""
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            try:
                connection.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() < deadline, "the server kept reading headers"
        assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer[:80]


def test_blank_lines_do_not_keep_a_connection_open() -> None:
    # The parser skips line breaks before a request line, so they start no request; they
    # still count as the first bytes of one, and the head's deadline runs from them.
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=0.3, header_timeout_s=0.5)
    with _serving(limits) as port, _connect(port) as connection:
        connection.settimeout(0.1)
        deadline = time.monotonic() + PATIENCE_S
        answer: bytes | None = None  # whatever the server sends before it closes
        while answer is None and time.monotonic() < deadline:
            try:
                connection.sendall(b"\r\n")
                answer = connection.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
        assert answer is not None, "the server kept a connection that only sent blank lines"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]


def test_a_body_that_stops_arriving_ends_the_request() -> None:
    app = _App()
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=30, header_timeout_s=0.5)
    with _serving(limits, app) as port, _connect(port) as connection:
        connection.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12345")
        assert _closed_by_server(connection) == b""
        deadline = time.monotonic() + PATIENCE_S
        while app.disconnects == 0:
            assert time.monotonic() < deadline, "the app never heard of the disconnect"
            time.sleep(0.01)


def test_a_client_that_stops_reading_its_answer_frees_the_slot() -> None:
    app = _App()
    limits = HttpLimits(8 * 1024, 1, keep_alive_timeout_s=30, header_timeout_s=0.5)
    with _serving(limits, app) as port, _connect(port) as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        # It never reads. The one slot is its; once the server gives up on it, others get in.
        deadline = time.monotonic() + PATIENCE_S
        while True:
            answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            if answer.startswith(b"HTTP/1.1 200"):
                break
            assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
            assert time.monotonic() < deadline, "a client that never reads held the slot"
            time.sleep(0.1)


def test_a_slow_client_within_the_timeouts_is_served() -> None:
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=2, header_timeout_s=5)
    with _serving(limits) as port, _connect(port) as connection:
        for part in (b"POST /echo HTTP/1.1\r\n", b"Host: x\r\nContent-Length: 4\r\n\r\n"):
            connection.sendall(part)
            time.sleep(0.2)
        for byte in b"abcd":
            connection.sendall(bytes([byte]))
            time.sleep(0.2)
        assert _read_answer(connection).startswith(b"HTTP/1.1 200")


def test_keep_alive_is_bounded() -> None:
    limits = HttpLimits(1024, 2, keep_alive_timeout_s=7, header_timeout_s=3)
    config = uvicorn_config(_App(), "127.0.0.1", 0, limits)
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


@pytest.mark.parametrize(
    "second",
    [b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab", b"GET / HTTP/1.1\r\nHo"],
    ids=["partial-body", "partial-head"],
)
def test_a_pipelined_request_is_not_timed_while_an_earlier_one_runs(second: bytes) -> None:
    # While the server answers the first request it stops reading: the second one's wait is
    # the server's doing, not the client's, and must not close the connection.
    app = _App()
    limits = HttpLimits(8 * 1024, 3, keep_alive_timeout_s=30, header_timeout_s=0.3)
    with _serving(limits, app) as port, _connect(port) as connection:
        connection.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n" + second)
        deadline = time.monotonic() + PATIENCE_S
        while app.held < 1:
            assert time.monotonic() < deadline, "the held request never started"
            time.sleep(0.01)
        time.sleep(1.0)  # several header timeouts
        app.release.set()
        rest = b"cd" if second.startswith(b"POST") else b"st: x\r\n\r\n"
        connection.sendall(rest)
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 2:
            chunk = connection.recv(65536)
            assert chunk, answers
            answers += chunk
        assert b"408" not in answers
