"""A second, independent look at an extracted model folder, before anyone may read it.

The member rules judge the archive; this walks what actually landed on disk, without following
any link, and checks that every symbolic link resolves inside the folder (the walk itself never
leaves it, so every other path is inside by construction), that only files, folders and links
exist, and that entries and bytes stay within the same caps. A failure here means the rules
missed something; the archive is refused all the same, with the same kind of 400.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from mme_local.artifacts.rules import (
    ENTRY_BYTES,
    MAX_MEMBERS,
    TOO_MANY_MEMBERS,
    ArchiveRejected,
    SizeLimit,
    check_cancelled,
    printable,
)


def check_extracted(root: Path, limit: SizeLimit, cancelled: threading.Event | None = None) -> int:
    """Checks the tree under `root`; returns what it is charged (data plus ENTRY_BYTES each).

    Raises ArchiveRejected for a link that resolves outside `root`, a special file, or a tree
    over the caps. Linear in the entries: each folder is listed once, each link resolved once.
    """
    real_root = os.path.realpath(root)
    entries = 0
    charged = 0
    seen_inodes: set[tuple[int, int]] = set()
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        with os.scandir(folder) as listing:
            for entry in listing:
                check_cancelled(cancelled)
                entries += 1
                if entries > MAX_MEMBERS:
                    raise ArchiveRejected(TOO_MANY_MEMBERS)
                info = entry.stat(follow_symlinks=False)
                charged += ENTRY_BYTES
                if stat.S_ISDIR(info.st_mode):
                    folders.append(entry.path)
                elif stat.S_ISLNK(info.st_mode):
                    _check_link(entry.path, real_root, root)
                elif stat.S_ISREG(info.st_mode):
                    # Hard links share their data: count it once.
                    inode = (info.st_dev, info.st_ino)
                    if info.st_nlink == 1 or inode not in seen_inodes:
                        seen_inodes.add(inode)
                        charged += info.st_size
                else:
                    raise ArchiveRejected(
                        "extracted a special file: an archive may hold only files, folders "
                        "and links",
                        _relative(entry.path, root),
                    )
                if charged > limit.max_bytes:
                    raise ArchiveRejected(limit.refusal())
    return charged


def _check_link(path: str, real_root: str, root: Path) -> None:
    resolved = os.path.realpath(path)
    if os.path.commonpath([resolved, real_root]) != real_root:
        raise ArchiveRejected(
            "symbolic link resolves outside the model folder once extracted: store the file itself",
            _relative(path, root),
        )


def _relative(path: str, root: Path) -> str:
    return printable(os.path.relpath(path, root))
