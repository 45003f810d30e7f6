"""Stream a model.tar.gz into a folder, refusing anything that could escape it.

Members are judged one by one, while the stream is read, by the same rules `lint` applies
(`mme_local.artifacts.rules`), and extracted with tarfile's `filter="data"`: links that stay
inside the model folder are kept, everything else that could escape is refused. Extraction goes
into a scratch folder beside the destination that is renamed into place only when the whole
archive was good, so a refused or cancelled archive leaves nothing behind.
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

from mme_local.artifacts.rules import (
    MAX_MEMBERS,
    ArchiveRejected,
    ArchiveRules,
    ExtractionCancelled,
    SizeLimit,
)
from mme_local.artifacts.tar_stream import check_cancelled, read_members

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
    `cancelled` stops the extraction at the next chunk or member with ExtractionCancelled.
    Returns the expanded size in bytes.
    """
    rules = ArchiveRules(limit if isinstance(limit, SizeLimit) else SizeLimit(limit))
    scratch = destination.parent / f".partial-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    try:
        with closing(read_members(stream, rules, cancelled)) as members:
            for archive, member, verdict in members:
                if verdict is not None:
                    raise verdict.rejected()
                archive.extract(member, scratch, filter="data")
        check_cancelled(cancelled)
        os.replace(scratch, destination)
    except tarfile.FilterError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ArchiveRejected(f"unsafe member refused: {error}") from error
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return rules.expanded
