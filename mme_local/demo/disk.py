"""The demo's disk need, where it lands, and a one-line refusal when a disk is short.

The embedded S3 (a moto server) keeps every object over about 5 MB in an unlinked temporary
file, so each published copy of the artifact takes its full size on disk for the whole run;
the cache extracts each model the workload names once. Both sums are known before publishing.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mme_local.demo.config import DemoError


@dataclass(frozen=True)
class DiskNeed:
    folder: Path
    bytes: int
    what: str
    """What takes the room, for the user: "200 published copies x 80.3 MiB (...)"."""
    per_copy: int = 0
    """Bytes each published copy adds (the rest does not shrink with fewer copies)."""


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def spill_dir() -> Path:
    """Where the embedded S3 writes its objects.

    The moto server is a child process started with this process's environment and working
    folder, so its `tempfile.gettempdir()` is this one ($TMPDIR, else /tmp, ...).
    """
    return Path(tempfile.gettempdir())


def extracted_bytes(archive: Path) -> int:
    """Sum of the archive's file sizes: what extracting it into the cache writes."""
    with tarfile.open(archive, "r:gz") as tar:
        return sum(member.size for member in tar if member.isfile())


def demo_needs(
    copies: int,
    archive_bytes: int,
    models_extracted: int,
    model_bytes: int,
    store_dir: Path,
    cache_dir: Path,
) -> list[DiskNeed]:
    return [
        DiskNeed(
            store_dir,
            copies * archive_bytes,
            f"{copies} published copies x {mib(archive_bytes)} "
            "in the embedded S3's temporary files",
            per_copy=archive_bytes,
        ),
        DiskNeed(
            cache_dir,
            models_extracted * model_bytes,
            f"{models_extracted} extracted models x {mib(model_bytes)} in the cache",
        ),
    ]


def _existing(folder: Path) -> Path:
    """The folder, or its nearest ancestor that exists (the cache folder is made later)."""
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _device(folder: Path) -> Hashable:
    return os.stat(_existing(folder)).st_dev


def _free(folder: Path) -> int:
    return shutil.disk_usage(_existing(folder)).free


@dataclass(frozen=True)
class Disk:
    """The needs that land on one file system, and its free bytes."""

    folder: Path
    free: int
    needs: list[DiskNeed]

    @property
    def needed(self) -> int:
        return sum(need.bytes for need in self.needs)

    def copies_that_fit(self, copies: int) -> int:
        per_copy = sum(need.per_copy for need in self.needs)
        if per_copy == 0:
            return 0
        fixed = self.needed - copies * per_copy
        return max(self.free - fixed, 0) // per_copy

    def describe(self) -> str:
        return " + ".join(need.what for need in self.needs)


def plan_disk(
    needs: Sequence[DiskNeed],
    free: Callable[[Path], int] = _free,
    device: Callable[[Path], Hashable] = _device,
) -> list[Disk]:
    """Groups the needs by file system (`device`) and reads each one's `free` bytes."""
    groups: dict[Hashable, list[DiskNeed]] = {}
    for need in needs:
        groups.setdefault(device(need.folder), []).append(need)
    return [Disk(group[0].folder, free(group[0].folder), group) for group in groups.values()]


def summary(disks: Sequence[Disk]) -> str:
    """One line for the user: what the run needs, where, and what is free there."""
    parts = [
        f"{gib(disk.needed)} in {disk.folder} ({disk.describe()}; {gib(disk.free)} free)"
        for disk in disks
    ]
    return "disk needed: " + "; ".join(parts)


def check_disk(disks: Sequence[Disk], copies: int) -> None:
    """Raises DemoError naming the need, the place, and how many copies would fit."""
    for disk in disks:
        if disk.needed <= disk.free:
            continue
        fits = disk.copies_that_fit(copies)
        fewer = f"`mme-local demo --copies {fits}`, or " if 0 < fits < copies else ""
        raise DemoError(
            f"the demo needs {gib(disk.needed)} free in {disk.folder} ({disk.describe()}) but "
            f"only {gib(disk.free)} is free: run {fewer}set TMPDIR to a folder on a bigger disk"
        )
