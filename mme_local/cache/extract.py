"""Stream a model.tar.gz into a folder, refusing anything that could escape it.

Members are judged one by one, while the stream is read, by the same rules `lint` applies
(`mme_local.artifacts.rules`), and extracted with tarfile's `filter="data"` as a second guard.
Extraction goes into a scratch folder beside the destination. Only when the whole archive was
read are the symbolic links judged against the complete member list (a later link can change
where an earlier one leads), and the tree on disk is walked once more to check that every link
resolves inside it (`mme_local.artifacts.confinement`); then it is renamed into place. Nothing
reads the scratch folder before that, and a refused or cancelled archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import uuid
from contextlib import closing
from pathlib import Path
from typing import IO

from mme_local.artifacts.confinement import check_extracted
from mme_local.artifacts.rules import (
    MAX_MEMBERS,
    ArchiveRejected,
    ArchiveRules,
    ExtractionCancelled,
    SizeLimit,
    check_cancelled,
    corrupt,
)
from mme_local.artifacts.tar_stream import read_members

__all__ = [
    "MAX_MEMBERS",
    "ArchiveRejected",
    "ExtractionCancelled",
    "SizeLimit",
    "extract_stream",
]


def extract_stream(
    stream: IO[bytes],
    destination: Path,
    limit: int | SizeLimit,
    cancelled: threading.Event | None = None,
) -> int:
    """Extract the gzip'd tar read from `stream` to `destination` (which must not exist).

    `limit` caps the expanded size; a SizeLimit also names why, for the refusal. Setting
    `cancelled` stops the extraction at the next chunk, member or checked entry with
    ExtractionCancelled. Returns the expanded size in bytes: file data plus `ENTRY_BYTES`
    for each file, folder and link.
    """
    size_limit = limit if isinstance(limit, SizeLimit) else SizeLimit(limit)
    rules = ArchiveRules(size_limit, cancelled)
    scratch = destination.parent / f".partial-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    try:
        with closing(read_members(stream, rules, cancelled)) as members:
            for archive, member, verdict in members:
                if verdict is not None:
                    raise verdict.rejected()
                archive.extract(member, scratch, filter="data")
        check_extracted(scratch, size_limit, cancelled)
        check_cancelled(cancelled)
        os.replace(scratch, destination)
    except tarfile.FilterError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ArchiveRejected(f"unsafe member refused: {error}") from error
    except tarfile.TarError as error:
        # A member's data ends early inside a well-formed gzip stream.
        shutil.rmtree(scratch, ignore_errors=True)
        raise ArchiveRejected(corrupt(error)) from error
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return rules.expanded
