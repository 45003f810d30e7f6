"""uvicorn's httptools protocol with limits on what one client may hold.

- *Header bytes.* httptools (llhttp) has no header limit of its own and buffers a header until
  it ends, so without one a client can make the server hold hundreds of megabytes. An ASGI app
  only sees headers once they are parsed, too late; the cap has to live where the bytes
  arrive. Bytes fed to the parser while a request's headers are incomplete are counted; past
  the cap the client gets 431 and the connection is closed. The parser is fed at most one read
  (≤ 256 KiB) past the cap before that happens.
- *Time.* uvicorn arms its keep-alive timer only after a response and has no header-read
  timeout, so a socket that never sends a byte, or sends its headers a byte at a time, stays
  open for ever. Here a connection with no request in progress closes after the keep-alive
  timeout from the moment it opens, a request's head must arrive whole within the header
  timeout of its first byte (else 408), and a body may pause no longer than that; nor may a
  client stop reading its answer for longer (its request would hold a slot meanwhile).
- *Concurrency.* uvicorn's `limit_concurrency` counts open sockets, so idle ones fill it and
  every real request gets 503. Here only requests in progress count against the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

_TOO_LARGE = b"Request header fields too large."
_TOO_SLOW = b"Request headers not received in time."


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it as a parser error."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    max_requests: int | None = None
    """Requests in progress (server-wide) past which a request gets 503; None for no limit."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_headers = True
        # Bytes read while a request's headers were incomplete (catches a header that never
        # ends), and the exact size of the parsed request line and headers (catches headers
        # that arrive whole in one read).
        self._read_in_headers = 0
        self._parsed = 0
        self._too_large = False
        self._app = self.app
        # Runs from a request's first byte until its headers are complete, and from each read
        # to the next while its body is incomplete. Any bytes past a message's end start the
        # next head's clock.
        self._read_timer: asyncio.TimerHandle | None = None
        self._in_body = False
        # Runs while the client does not read what it is sent.
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # uvicorn's own idle timer starts only after a first response; start it now, so a
        # socket that never sends a request is closed like an idle kept-alive one.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        self._cancel_write_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._read_in_headers += len(data)
            if self._read_timer is None:
                # The head's deadline runs from its first byte, even bytes the parser skips
                # (blank lines before a request line start no message).
                self._arm_read_timer(self._headers_too_slow)
        elif self._in_body:
            self._arm_read_timer(self._body_stalled)
        super().data_received(data)
        if self._in_headers and self._read_in_headers > self.max_header_bytes:
            self._too_large = True
            self.send_400_response("")

    def _arm_read_timer(self, on_timeout: Callable[[], None]) -> None:
        self._cancel_read_timer()
        self._read_timer = self.loop.call_later(self.header_timeout_s, on_timeout)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _waiting_on_us(self) -> bool:
        """True while the server, not the client, holds things up: reading is paused (flow
        control, or a pipelined request waits its turn) or an earlier request on this
        connection is still being answered. Such time is not charged to the client."""
        earlier_running = self._in_headers and not (
            self.cycle is None or self.cycle.response_complete
        )
        return self.flow.read_paused or earlier_running

    def _headers_too_slow(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._waiting_on_us():
            self._arm_read_timer(self._headers_too_slow)
            return
        self.logger.warning("Request headers not complete within %.1f s.", self.header_timeout_s)
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(_TOO_SLOW)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + _TOO_SLOW
        )
        self.transport.close()

    def _body_stalled(self) -> None:
        # A response may already be under way, so nothing more can be written; the app hears
        # `http.disconnect` and the request ends without invoking anything.
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._waiting_on_us():
            self._arm_read_timer(self._body_stalled)
            return
        self.logger.warning("Request body paused over %.1f s.", self.header_timeout_s)
        self.transport.close()

    def pause_writing(self) -> None:
        """The client stopped reading (the socket's send buffer is full): the response's task
        waits, and holds a request slot, until it reads again. It gets the same grace as a
        pause in a request body; then the connection is closed and the slot freed."""
        super().pause_writing()
        self._cancel_write_timer()
        self._write_timer = self.loop.call_later(self.header_timeout_s, self._answer_unread)

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _answer_unread(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.logger.warning("Response not read for %.1f s.", self.header_timeout_s)
            # abort(), not close(): close() would wait to flush what the client won't read.
            self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._read_timer is None:
            self._arm_read_timer(self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._parsed += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_read_timer()
        if self._parsed > self.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge
        # uvicorn reads `self.app` here to start (or queue) the request.
        busy = self.max_requests is not None and len(self.tasks) >= self.max_requests
        if busy:
            self.logger.warning("%d requests in progress; answered 503.", len(self.tasks))
        self.app = service_unavailable if busy else self._app
        self._in_body = True
        self._arm_read_timer(self._body_stalled)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_read_timer()
        super().on_message_complete()
        # The next bytes are the next request's. A pipelined request's first bytes that came
        # in the same read as this one's end go uncounted: an undercount of at most one read.
        self._in_headers = True
        self._read_in_headers = 0
        self._parsed = 0

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; 431 when the error is ours."""
        if not self._too_large:
            super().send_400_response(msg)
            return
        if self.transport.is_closing():
            return
        self.logger.warning("Request headers over %d bytes refused.", self.max_header_bytes)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(_TOO_LARGE)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + _TOO_LARGE
        )
        self.transport.close()


def limited_protocol(
    max_header_bytes: int, header_timeout_s: float, max_requests: int | None
) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these limits."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout_s": header_timeout_s,
            "max_requests": max_requests,
        },
    )
