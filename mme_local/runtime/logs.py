"""Reading tritonserver's log file: its last lines for error reports, and its version banner."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

VERSION_LINE = re.compile(rb"server_version\s*\|\s*([0-9][0-9A-Za-z.\-]*)")


def read_log_tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return b"\n".join(data.splitlines()[-lines:]).decode(errors="replace")


# Triton prints its start-up table within its first lines; a log is never read whole.
_BANNER_BYTES = 1024 * 1024


def read_version(path: Path) -> str | None:
    """The `server_version` Triton prints in its start-up table, if it is in the log yet.

    Blocking file I/O: call it from a thread. Each start writes a fresh log
    (`rotate_log`), so the banner found is this start's.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(_BANNER_BYTES)
    except OSError:
        return None
    match = VERSION_LINE.search(head)
    return match.group(1).decode() if match else None


def rotate_log(path: Path) -> None:
    """Make room for a start's own log: the previous start's is kept as `<name>.1` (the one
    before it is dropped), so neither grows without end nor speaks for another start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, path.with_name(path.name + ".1"))
