"""Hostile requests for the fault soak, sent over raw sockets: each kind and what it should get.

`MID_BODY` promises more body than it sends and hangs up (no answer expected); the others
are malformed requests whose answer must be a 4xx naming the problem, never a 2xx or a 5xx.
"""

from __future__ import annotations

import contextlib
import os
import socket

from mme_local.gateway.validation import MAX_BODY_BYTES

MID_BODY = "mid-body drop"
EXPECTED: dict[str, set[int]] = {
    MID_BODY: {0},
    "no TargetModel header": {400},
    "unknown endpoint name": {400, 404},
    "oversize body": {400, 413},
    "garbage bytes": {400},
    "huge headers": {431},
}
"""Status each kind should get; 0 is "no answer" (the client hung up first)."""
KINDS = list(EXPECTED)


def _post(endpoint: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST /endpoints/{endpoint}/invocations HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(connection: socket.socket) -> int:
    """The answer's status code, or 0 if the server closed without one."""
    answer = b""
    while b"\r\n" not in answer:
        try:
            chunk = connection.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        answer += chunk
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _send(connection: socket.socket, data: bytes) -> None:
    # The server may answer and close before it has read everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.sendall(data)


def send_abuse(port: int, kind: str, endpoint: str, target: str) -> int:
    """Send one request of `kind`; return the status it got (0: none)."""
    body = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}'
    json_type = {"Content-Type": "application/json"}
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        if kind == MID_BODY:
            headers = {**json_type, "X-Amzn-SageMaker-Target-Model": target}
            _send(connection, _post(endpoint, headers, 4096) + body)
            return 0
        if kind == "no TargetModel header":
            _send(connection, _post(endpoint, json_type, len(body)) + body)
        elif kind == "unknown endpoint name":
            headers = {**json_type, "X-Amzn-SageMaker-Target-Model": target}
            _send(connection, _post("no-such-endpoint", headers, len(body)) + body)
        elif kind == "oversize body":
            headers = {**json_type, "X-Amzn-SageMaker-Target-Model": target}
            size = MAX_BODY_BYTES + 1
            _send(connection, _post(endpoint, headers, size))
            chunk, left = b"0" * 65536, size
            while left > 0:
                try:
                    connection.sendall(chunk[:left])
                except (BrokenPipeError, ConnectionResetError):
                    break
                left -= len(chunk)
        elif kind == "garbage bytes":
            _send(connection, os.urandom(512) + b"\r\n\r\n")
        elif kind == "huge headers":
            headers = {"X-Amzn-SageMaker-Target-Model": target, "X-Pad": "a" * (256 * 1024)}
            _send(connection, _post(endpoint, headers, len(body)) + body)
        else:
            raise ValueError(f"unknown abuse kind {kind!r}")
        return _status(connection)
