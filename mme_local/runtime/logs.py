"""Reading tritonserver's log file: its last lines for error reports, and its version banner."""

from __future__ import annotations

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


def read_version(path: Path) -> str | None:
    """The `server_version` Triton prints in its start-up table, if it is in the log yet."""
    try:
        match = VERSION_LINE.search(path.read_bytes())
    except OSError:
        return None
    return match.group(1).decode() if match else None
