"""How the `pytorch` backend's thin stubs and the torch host talk.

One Unix SEQPACKET connection per loaded model instance: each message is one small JSON
header (message boundaries are the socket's, no framing of our own). Tensor bytes never go
through the socket: each connection has a shared-memory area (a memfd handed over with
SCM_RIGHTS) that both sides map; the stub writes its inputs there and the host reads them in
place (`torch.from_numpy` on the mapping, no copy), then writes the outputs there. Whichever
side needs a bigger area makes a new one and sends its descriptor with the message.

This file is copied next to the stub's `model.py` (the stub ignores PYTHONPATH and must not
import mme_local or torch), so it needs only the standard library and numpy.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SOCKET_ENV = "MME_LOCAL_TORCH_HOST"
"""Environment variable holding the host's socket path; Triton passes it on to its stubs."""

MAX_MESSAGE = 1 << 17
"""Largest header either side sends (error texts are cut to fit)."""
MAX_ERROR_CHARS = 16_000
_ALIGN = 64
_FIRST_AREA = 1 << 20

Array = npt.NDArray[Any]
Header = dict[str, Any]


class HostGone(ConnectionError):
    """The torch host closed the connection or could not be reached."""


class HostError(RuntimeError):
    """The torch host answered with an error (torch's own text, passed on unchanged)."""


class Area:
    """A shared-memory buffer mapped by both sides of one connection."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.map = mmap.mmap(fd, size)

    @classmethod
    def create(cls, size: int) -> Area:
        fd = os.memfd_create("mme-local-torch-host", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size)
        except BaseException:
            os.close(fd)
            raise

    def view(self, described: Header) -> Array:
        """The array `described` names, in place (no copy)."""
        dtype = np.dtype(described["dtype"])
        shape = tuple(int(n) for n in described["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        offset = int(described["offset"])
        if offset < 0 or offset + count * dtype.itemsize > self.size:
            raise ValueError(f"tensor at offset {offset} does not fit the shared area")
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=offset).reshape(shape)

    def write(self, arrays: Sequence[Array]) -> list[Header]:
        """Copy `arrays` in (the area must be large enough) and describe where they lie."""
        described, offsets = [], layout(arrays)
        for array, offset in zip(arrays, offsets, strict=True):
            if array.nbytes:
                target = np.frombuffer(self.map, dtype=array.dtype, count=array.size, offset=offset)
                target[...] = array.reshape(-1)
            described.append(
                {"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
            )
        return described

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def layout(arrays: Sequence[Array]) -> list[int]:
    """Offsets of `arrays` packed one after another, each aligned to 64 bytes."""
    offsets, position = [], 0
    for array in arrays:
        offsets.append(position)
        position += -(-array.nbytes // _ALIGN) * _ALIGN
    return offsets


def needed(arrays: Sequence[Array]) -> int:
    """Bytes an area needs to hold `arrays` as `layout` places them."""
    if not arrays:
        return 0
    return layout(arrays)[-1] + arrays[-1].nbytes


def grown(current: int, wanted: int) -> int:
    """The size of a replacement area: at least double, so growth happens rarely."""
    return max(wanted, 2 * current, _FIRST_AREA)


def send(sock: socket.socket, header: Header, fds: Sequence[int] = ()) -> None:
    data = json.dumps(header).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes is over the {MAX_MESSAGE} limit")
    try:
        if fds:
            socket.send_fds(sock, [data], list(fds))
        else:
            sock.send(data)
    except OSError as error:
        raise HostGone(f"the torch host connection failed: {error}") from error


def receive(sock: socket.socket) -> tuple[Header, list[int]]:
    """The next message and any descriptors sent with it; HostGone at end of stream."""
    try:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
    except OSError as error:
        raise HostGone(f"the torch host connection failed: {error}") from error
    if not data:
        for fd in fds:
            os.close(fd)
        raise HostGone("the torch host closed the connection")
    if flags & socket.MSG_TRUNC:
        raise ValueError("a torch host message was cut short")
    header: Header = json.loads(data)
    return header, fds


def connect(path: str, wait_s: float) -> socket.socket:
    """Connect to the host, waiting up to `wait_s` for it to come up (it imports torch
    while Triton starts, so the first model may ask before it listens)."""
    deadline = time.monotonic() + wait_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as error:
            sock.close()
            if time.monotonic() > deadline:
                raise HostGone(f"no torch host answers at {path}: {error}") from error
            time.sleep(0.05)


def cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class HostConnection:
    """The stub's side: one model instance held by the host for as long as this is open."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.area = Area.create(_FIRST_AREA)

    @classmethod
    def open(cls, path: str | None = None, wait_s: float = 120.0) -> HostConnection:
        path = path or os.environ.get(SOCKET_ENV)
        if not path:
            raise HostGone(
                f"{SOCKET_ENV} is not set: this backend runs inside mme-local's embedded Triton, "
                "which starts the torch host"
            )
        return cls(connect(path, wait_s))

    def _call(self, header: Header, fds: Sequence[int] = ()) -> Header:
        send(self.sock, header, fds)
        answer, received = receive(self.sock)
        if received:
            replacement = Area(received[0], int(answer["area"]))
            for extra in received[1:]:
                os.close(extra)
            self.area.close()
            self.area = replacement
        if "error" in answer:
            raise HostError(answer["error"])
        return answer

    def load(self, request: Header) -> Header:
        """Ask the host to load a module; its answer names the inputs in forward() order."""
        return self._call({**request, "op": "load", "area": self.area.size}, [self.area.fd])

    def infer(self, arrays: Sequence[Array]) -> list[Array]:
        """Run the module on `arrays` (in the order `load` answered); outputs are copies."""
        fds: list[int] = []
        wanted = needed(arrays)
        if wanted > self.area.size:
            replacement = Area.create(grown(self.area.size, wanted))
            self.area.close()
            self.area = replacement
            fds = [replacement.fd]
        described = self.area.write([np.ascontiguousarray(a) for a in arrays])
        answer = self._call({"op": "infer", "inputs": described, "area": self.area.size}, fds)
        # Copied out: the next request of the same execute() reuses the area before Triton
        # serialises this response.
        return [np.array(self.area.view(output)) for output in answer["outputs"]]

    def close(self) -> None:
        """Closing the connection is the unload: the host frees the module at once."""
        self.sock.close()
        self.area.close()
