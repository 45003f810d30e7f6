"""Appending a benchmark's result to docs/benchmarks.md, with the machine and the command."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def append_result(title: str, about: str, table: str) -> None:
    """Add a section: the title with the time, the machine, the exact command, notes, table."""
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}"
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    script = Path(sys.argv[0]).name
    command = " ".join(["python", f"bench/{script}", *sys.argv[1:]])
    section = (
        f"\n## {title} ({stamp})\n\n"
        f"- Machine: {machine}\n- Command: `{command}`\n- {about}\n\n{table}\n"
    )
    with BENCHMARKS_MD.open("a") as handle:
        handle.write(section)
