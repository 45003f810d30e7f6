"""Which controller owns a Triton container, and removing the containers whose owner is gone.

A controller that is SIGKILLed or OOM-killed cannot remove its container (the embedded
runtime's child dies with its parent; a container does not). Each container carries its
controller's host name, pid and process start time, so the next start on the same host can
tell a leftover from a container another live controller runs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
import requests

log = logging.getLogger(__name__)

OWNER_HOST_LABEL = "mme-local.owner-host"
OWNER_PID_LABEL = "mme-local.owner-pid"
OWNER_STARTED_LABEL = "mme-local.owner-started"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    if there is no such process. A pid and its start time name one process; pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields follow the last ")".
    return stat[stat.rindex(")") + 2 :].split()[19]


def owner_labels() -> dict[str, str]:
    """Labels naming this process as a container's owner."""
    pid = os.getpid()
    return {
        OWNER_HOST_LABEL: socket.gethostname(),
        OWNER_PID_LABEL: str(pid),
        OWNER_STARTED_LABEL: _process_start(pid) or "",
    }


def _owner_gone(labels: Mapping[str, str]) -> bool:
    """True only for a container this host's controller started and that controller is gone."""
    pid = labels.get(OWNER_PID_LABEL, "")
    if labels.get(OWNER_HOST_LABEL) != socket.gethostname() or not pid.isdigit():
        return False
    started = _process_start(int(pid))
    return started is None or started != labels.get(OWNER_STARTED_LABEL)


def remove_leftovers(client: Any) -> list[str]:
    """Remove the containers whose controller died without removing them; their names."""
    removed: list[str] = []
    try:
        candidates = client.containers.list(all=True, filters={"label": OWNER_PID_LABEL})
    except (docker.errors.DockerException, requests.RequestException) as error:
        log.warning("could not list leftover mme-local containers: %r", error)
        return removed
    for container in candidates:
        if not _owner_gone(container.labels or {}):
            continue
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            continue
        except (docker.errors.DockerException, requests.RequestException) as error:
            log.warning("could not remove leftover container %s: %s", container.name, error)
            continue
        log.warning(
            "removed leftover container %s: its controller (pid %s) is gone",
            container.name,
            container.labels.get(OWNER_PID_LABEL),
        )
        removed.append(str(container.name))
    return removed
