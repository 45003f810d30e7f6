"""Where a TargetModel lives in the cache folder: `<cache>/<hash>/model`.

The hash is stable and made of `[0-9a-f]`, so the same folder works when the cache is
mounted at /opt/ml/models inside a container (Triton >= 2.70 refuses `-` in that path).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
import uuid
from pathlib import Path

_HASH = re.compile(r"^[0-9a-f]{32}$")
_INSTANCE = re.compile(r"^instance-[0-9]+$")


def model_hash(target_model: str) -> str:
    """32 lowercase hex characters, like the model names SageMaker passes to containers."""
    return hashlib.sha256(target_model.encode()).hexdigest()[:32]


def model_dir(cache_dir: Path, name: str) -> Path:
    return cache_dir / name / "model"


def disk_usage(path: Path) -> int:
    total = 0
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            total += file.stat().st_size
    return total


def clear_stale(cache_dir: Path) -> None:
    """Remove model folders left by an earlier run (a fresh instance starts with an empty disk),
    and the instance folders (`instance-<i>`) of an earlier run with several instances."""
    if not cache_dir.is_dir():
        return
    for child in cache_dir.iterdir():
        name = child.name
        if child.is_dir() and (
            _HASH.match(name) or name.startswith(".trash-") or _INSTANCE.match(name)
        ):
            shutil.rmtree(child, ignore_errors=True)


class CacheFolder:
    """Where artifacts are extracted: the user's folder (stale models cleared at open) or a
    temporary one, removed at close."""

    def __init__(self, configured: Path | None) -> None:
        self.configured = configured
        self.path = Path()
        self._temporary: Path | None = None

    async def open(self) -> Path:
        """Make the folder ready. An earlier run may have left gigabytes of model folders:
        deleting them is file-system work, done in a thread so the event loop stays free."""
        self.path = await asyncio.to_thread(self._open)
        return self.path

    def _open(self) -> Path:
        if self.configured is None:
            self._temporary = Path(tempfile.mkdtemp(prefix="mme-local-cache-"))
            return self._temporary
        path = self.configured.resolve()
        path.mkdir(parents=True, exist_ok=True)
        clear_stale(path)
        return path

    def close(self) -> None:
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None


def free_bytes(folder: Path) -> int:
    """Free space of the file system holding `folder`."""
    return shutil.disk_usage(folder).free


def move_aside(folder: Path) -> Path | None:
    """Rename `folder` to a hidden name beside it (instant), for deleting at leisure.

    Returns the new path, or None if there was nothing to move.
    """
    trash = folder.parent / f".trash-{uuid.uuid4().hex}"
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return None
    return trash
