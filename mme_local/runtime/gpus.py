"""Which NVIDIA GPUs this machine shows, without importing a CUDA library."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int


def visible_gpus() -> list[Gpu]:
    """GPUs as nvidia-smi reports them; an empty list where there is no driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = "--query-gpu=index,name,memory.total,memory.used"
    try:
        output = subprocess.run(
            [smi, query, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            mib = 1024 * 1024
            gpus.append(Gpu(int(parts[0]), parts[1], int(parts[2]) * mib, int(parts[3]) * mib))
    return gpus
