"""A loopback TCP proxy that can cut its upstream off: the S3 outage of the fault soak.

While `outage()` is on, every accepted connection is reset at once and every open one is reset
too, so a client sees the same connection errors it would see from an unreachable S3.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator


def _reset(connection: socket.socket, in_use: bool = False) -> None:
    """Close with an RST rather than a FIN: the peer gets ECONNRESET, not a clean end.

    A socket another thread blocks on in recv() must be shut down first: close() alone
    neither wakes that thread nor lets the kernel release the connection.
    """
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if in_use:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        connection.close()


class FaultProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.accepted = 0
        self.refused = 0
        """Connections reset because they arrived during an outage."""
        self.cut = 0
        """Open connections reset when an outage began."""
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._reset_all()
        self._thread.join(5)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """S3 is unreachable inside the block."""
        self._down.set()
        self.cut += self._reset_all() // 2  # two sockets per proxied connection
        try:
            yield
        finally:
            self._down.clear()

    def _reset_all(self) -> int:
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        for connection in victims:
            _reset(connection, in_use=True)
        return len(victims)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                self.refused += 1
                _reset(client)
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.update((client, upstream))
        pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        pump.start()
        self._pump(client, upstream)
        pump.join()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()
