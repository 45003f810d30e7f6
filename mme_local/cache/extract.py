"""Stream a model.tar.gz into a folder, refusing anything that could escape it.

Members are checked one by one while the stream is read: no absolute paths, no `..`, only
regular files and folders (no links, devices or FIFOs), and a cap on the expanded size and on
the member count. Extraction goes into a scratch folder that is renamed into place only when
the whole archive was good, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

MAX_MEMBERS = 100_000


class ArchiveRejected(ValueError):
    """The archive is corrupt or would write outside its folder, or is too big."""


def _check_member(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")):
        raise ArchiveRejected(f"member {name!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveRejected(f"member {name!r} escapes the model folder with '..'")
    if member.issym() or member.islnk():
        raise ArchiveRejected(
            f"member {name!r} is a link (to {member.linkname!r}); links are refused"
        )
    if not (member.isfile() or member.isdir()):
        raise ArchiveRejected(f"member {name!r} is a device, FIFO or other special file")
    return path


def extract_stream(stream: IO[bytes], destination: Path, max_expanded_bytes: int) -> int:
    """Extract the gzip'd tar read from `stream` to `destination` (which must not exist).

    Returns the expanded size in bytes.
    """
    scratch = destination.parent / f".partial-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    expanded = 0
    members = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            for member in archive:
                _check_member(member)
                members += 1
                expanded += member.size
                if members > MAX_MEMBERS:
                    raise ArchiveRejected(f"archive has more than {MAX_MEMBERS} members")
                if expanded > max_expanded_bytes:
                    raise ArchiveRejected(
                        f"archive expands past the limit of {max_expanded_bytes} bytes"
                    )
                archive.extract(member, scratch, filter="data")
        if members == 0:
            raise ArchiveRejected("archive is empty")
        os.replace(scratch, destination)
    except (tarfile.ReadError, tarfile.CompressionError, zlib.error, EOFError) as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ArchiveRejected(f"not a valid gzip-compressed tar archive ({error})") from error
    except tarfile.FilterError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ArchiveRejected(f"unsafe member refused: {error}") from error
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return expanded
