"""Which controller owns a Triton container, and removing the containers whose owner is gone.

A controller that is SIGKILLed or OOM-killed cannot remove its container (the embedded
runtime's child dies with its parent; a container does not), so every start removes the
containers whose controller is provably gone.

The proof is a lock file: while a controller runs containers it holds an exclusive `flock` on
`<work dir>/owner-<token>.lock`, a file holding the token, and labels each container with the
file's path and the token. The kernel drops the lock when the process dies, however it dies.
A judge that can open that path, finds the same token in it and takes the lock knows the owner
is gone. Host name and pid can't prove it: a controller in a container with the host's network
has the host's name and its own PID namespace, so another controller would read its pid as
someone else's (or no one's). Anything short of the proof leaves the container alone: a lock
file not visible from here (another mount namespace), another file under that name, or a
container from a version without the lock labels.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
import requests

log = logging.getLogger(__name__)

# For people (`docker ps --filter label=mme-local.owner-pid`); never used as proof.
OWNER_HOST_LABEL = "mme-local.owner-host"
OWNER_PID_LABEL = "mme-local.owner-pid"
OWNER_STARTED_LABEL = "mme-local.owner-started"
# The proof: the lock file's path as the owner sees it, and the token written in it.
OWNER_LOCK_LABEL = "mme-local.owner-lock"
OWNER_TOKEN_LABEL = "mme-local.owner-token"

_TOKEN_BYTES = 64


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields follow the last ")".
    return stat[stat.rindex(")") + 2 :].split()[19]


def owner_labels() -> dict[str, str]:
    """Labels naming this process as a container's owner, for people reading `docker ps`."""
    pid = os.getpid()
    return {
        OWNER_HOST_LABEL: socket.gethostname(),
        OWNER_PID_LABEL: str(pid),
        OWNER_STARTED_LABEL: _process_start(pid) or "",
    }


class OwnerLock:
    """The lock file a controller holds while its containers may run."""

    def __init__(self, folder: Path) -> None:
        self.token = uuid.uuid4().hex
        self.path = folder.resolve() / f"owner-{self.token}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Locked before the token is written: a judge never sees the token unlocked.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, self.token.encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(fd)

    def labels(self) -> dict[str, str]:
        return {
            **owner_labels(),
            OWNER_LOCK_LABEL: str(self.path),
            OWNER_TOKEN_LABEL: self.token,
        }


def _owner_gone(labels: Mapping[str, str]) -> Path | None:
    """The owner's lock file if it proves the owner is gone; None if the owner lives or it
    can't be told from here."""
    path, token = labels.get(OWNER_LOCK_LABEL), labels.get(OWNER_TOKEN_LABEL)
    if not path or not token:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.read(fd, _TOKEN_BYTES).decode(errors="replace") != token:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return Path(path)
    finally:
        os.close(fd)  # also lets go of the lock, if it was taken


def remove_leftovers(client: Any) -> list[str]:
    """Remove the containers whose controller died without removing them; their names."""
    removed: list[str] = []
    try:
        candidates = client.containers.list(all=True, filters={"label": OWNER_PID_LABEL})
    except (docker.errors.DockerException, requests.RequestException) as error:
        log.warning("could not list leftover mme-local containers: %r", error)
        return removed
    for container in candidates:
        labels = container.labels or {}
        lock = _owner_gone(labels)
        if lock is None:
            continue
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as error:
            log.warning("could not remove leftover container %s: %s", container.name, error)
            continue
        with contextlib.suppress(OSError):
            lock.unlink()
        log.warning(
            "removed leftover container %s: its controller (pid %s on %s) is gone",
            container.name,
            labels.get(OWNER_PID_LABEL),
            labels.get(OWNER_HOST_LABEL),
        )
        removed.append(str(container.name))
    return removed
