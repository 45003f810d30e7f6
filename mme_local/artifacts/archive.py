"""Deterministic model.tar.gz files: the same folder always gives the same bytes.

Members are sorted and carry no time, owner or umask of the machine that built them, and the
gzip header has no name or time, so an unchanged model re-packaged anywhere is recognised as
unchanged by `publish()` and is not uploaded again.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

DEFAULT_COPY_PATTERN = "model-{i}.tar.gz"
_DIR_MODE = 0o755
_FILE_MODE = 0o644
_EXEC_MODE = 0o755


class ArchiveError(ValueError):
    """A folder that cannot be archived, or copy names that cannot be used."""


def _members(root: Path) -> Iterator[Path]:
    """Every file and folder under root, depth first in name order; links are refused."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_symlink():
            raise ArchiveError(f"{entry} is a symbolic link: SageMaker's Triton may refuse it")
        yield entry
        if entry.is_dir():
            yield from _members(entry)


def _tar_info(path: Path, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = _DIR_MODE
    elif path.is_file():
        info.size = path.stat().st_size
        info.mode = _EXEC_MODE if os.access(path, os.X_OK) else _FILE_MODE
    else:
        raise ArchiveError(f"{path} is neither a file nor a folder")
    return info


def make_archive(folder: Path, out_path: Path, compresslevel: int = 6) -> Path:
    """Write `folder` (a Triton model folder) to out_path as `<folder name>/...`.

    The file appears only when complete, so a reader never sees half an archive.
    """
    if not folder.is_dir():
        raise ArchiveError(f"{folder} is not a folder")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    entries = [folder, *_members(folder)]
    # An empty filename and mtime 0 keep the build's path and clock out of the gzip header.
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in entries:
            arcname = folder.name
            if path != folder:
                arcname = path.relative_to(folder.parent).as_posix()
            info = _tar_info(path, arcname)
            if info.isdir():
                tar.addfile(info)
            else:
                with path.open("rb") as body:
                    tar.addfile(info, body)
    partial.replace(out_path)
    return out_path


def copy_names(pattern: str, copies: int) -> list[str]:
    """File names for `copies` copies: pattern.format(i=0 .. copies-1)."""
    if copies < 1:
        raise ArchiveError("copies must be at least 1")
    try:
        names = [pattern.format(i=i) for i in range(copies)]
    except (KeyError, IndexError, ValueError) as error:
        raise ArchiveError(f"name pattern {pattern!r}: use {{i}} for the copy number") from error
    if len(set(names)) != len(names):
        raise ArchiveError(f"name pattern {pattern!r} gives the same name twice: put {{i}} in it")
    for name in names:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ArchiveError(f"{name!r} is not a plain file name")
    return names


def write_copies(archive: Path, out_dir: Path, names: list[str]) -> list[Path]:
    """Place `archive` under each name in out_dir; identical copies share one inode if they can."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        target = out_dir / name
        paths.append(target)
        if target.exists() and target.samefile(archive):
            continue
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            os.link(archive, partial)
        except OSError:
            shutil.copyfile(archive, partial)
        partial.replace(target)
    return paths
