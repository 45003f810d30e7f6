"""uvicorn's httptools protocol with a cap on request-line-plus-header bytes.

httptools (llhttp) has no header limit of its own and buffers a header until it ends, so
without one a client can make the server hold hundreds of megabytes. An ASGI app only sees
headers once they are parsed, too late; the cap has to live where the bytes arrive. Bytes fed
to the parser while a request's headers are incomplete are counted; past the cap the client
gets 431 and the connection is closed. The parser is fed at most one read (≤ 256 KiB) past the
cap before that happens.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

_TOO_LARGE = b"Request header fields too large."


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing; httptools re-raises it as a parser error."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: int = 64 * 1024

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

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._read_in_headers += len(data)
        super().data_received(data)
        if self._in_headers and self._read_in_headers > self.max_header_bytes:
            self._too_large = True
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._parsed += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._parsed > self.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
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


def limited_protocol(max_header_bytes: int) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with this cap."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes},
    )
