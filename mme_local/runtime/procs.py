"""Process-tree facts read from /proc: which processes a runtime owns and how much memory."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path

_PROC = Path("/proc")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _parent_of(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name sits in parentheses and may itself hold spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1])


def descendants(root: int) -> list[int]:
    """PIDs of every live process below `root` (not including it)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        parent = _parent_of(int(entry.name))
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    frontier = [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def processes_in_group(pgid: int) -> list[int]:
    """PIDs of live (not zombie) processes whose process group is `pgid`."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of the given processes, summed; vanished processes count as 0."""
    total = 0
    for pid in pids:
        try:
            resident_pages = int((_PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * _PAGE_SIZE
    return total


def command_line(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def serving_model(pids: list[int], model_name: str) -> list[int]:
    """Those of `pids` started for the model folder `<cache>/<model_name>/model` (a Python
    backend stub names its model's path on its command line) and their children."""
    marker = f"/{model_name}/model/"
    roots = [pid for pid in pids if any(marker in arg for arg in command_line(pid))]
    return [*roots, *(child for root in roots for child in descendants(root))]


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM if the controller dies without stopping it.

    Linux ties this to the thread that started the child, so children are started from the
    event loop's thread, which lives as long as the emulator.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def exit_status(process: subprocess.Popen[bytes]) -> int | None:
    """`process`'s exit status once it has ended (reaping it), None while it runs.

    `Popen.poll()` alone answers None while another thread is inside poll() or wait() for the
    same process (it skips a waitpid rather than wait for that thread's), so a dead server
    could pass for alive to a check made just then. A peek that leaves the child to be
    reaped (`WNOWAIT`) decides, and `wait()` then collects the status.

    A multi-threaded process whose first thread has ended while others are still being torn
    down shows as a zombie in /proc but is not yet reapable: it counts as running here.
    """
    returncode = process.poll()
    if returncode is not None:
        return returncode
    try:
        ended = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        # The other thread reaped it: wait() takes Popen's lock once that thread has stored
        # the status (poll() would still say None until then).
        ended = True
    return process.wait() if ended else None
