"""Read a gzip'd tar as a stream, judging each member, with every decompressed byte counted.

tarfile reads pax and GNU long-name headers into memory whole before it returns the member they
belong to, so a few kilobytes of gzip can grow the reader by gigabytes before any member check
runs. Here the gzip stream is decompressed in bounded steps under tarfile, and the bytes tarfile
pulls while it reads headers are counted: past `MAX_HEADER_BYTES` for one member, past
`MAX_TOTAL_HEADER_BYTES` for the archive, or past the size limit in all, the archive is refused
before tarfile can hold more.
"""

from __future__ import annotations

import tarfile
import threading
import zlib
from collections.abc import Generator
from typing import IO

from mme_local.artifacts.rules import (
    HEADER_TOO_LARGE,
    HEADERS_TOO_LARGE_IN_ALL,
    MAX_HEADER_BYTES,
    MAX_MEMBERS,
    MAX_TOTAL_HEADER_BYTES,
    ArchiveRejected,
    ArchiveRules,
    Verdict,
    check_cancelled,
    corrupt,
)

__all__ = ["check_cancelled", "read_members"]

_CHUNK = 64 << 10
_RECORD = tarfile.RECORDSIZE
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
# The fixed header blocks and padding of every member, on top of what the members hold.
_TAR_OVERHEAD = MAX_MEMBERS * 2 * tarfile.BLOCKSIZE + MAX_TOTAL_HEADER_BYTES + 2 * _RECORD
# tarfile pulls whole records, so a phase may see up to two records of its neighbours' bytes.
_SLACK = 4 * _RECORD


class _GuardedStream:
    """The tar bytes inside a gzip stream, decompressed a bounded step at a time, and counted."""

    def __init__(
        self, source: IO[bytes], rules: ArchiveRules, cancelled: threading.Event | None
    ) -> None:
        self._source = source
        self._rules = rules
        self._cancelled = cancelled
        self._decoder = zlib.decompressobj(_GZIP_WBITS)
        self._input = b""
        self._finished = False
        self._position = 0
        self._headers_at = 0
        """Where the next member's headers start in the tar stream (tarfile's own offset)."""
        self._header_total = 0

    def member_read(self, member: tarfile.TarInfo, next_headers_at: int) -> None:
        """tarfile returned `member`; the next member's headers start at `next_headers_at`.

        Everything before that offset is this member's data, read or skipped (lint skips most
        of it): only the blocks from a header's start to its member's data count as headers.
        """
        self._header_total += max(0, member.offset_data - self._headers_at)
        self._headers_at = next_headers_at

    def read(self, size: int = -1, /) -> bytes:
        check_cancelled(self._cancelled)
        want = size if size > 0 else _CHUNK
        data = self._decompress(want)
        self._position += len(data)
        if self._position > self._rules.limit.max_bytes + _TAR_OVERHEAD:
            raise ArchiveRejected(self._rules.limit.refusal())
        # Checked while tarfile reads a header, before it can hold more than the caps: bytes past
        # the next header's start are headers (give or take one read ahead, the slack).
        pending = self._position - self._headers_at
        if pending > MAX_HEADER_BYTES + _SLACK:
            raise ArchiveRejected(HEADER_TOO_LARGE)
        if self._header_total + pending > MAX_TOTAL_HEADER_BYTES + _SLACK:
            raise ArchiveRejected(HEADERS_TOO_LARGE_IN_ALL)
        return data

    def _decompress(self, want: int) -> bytes:
        while not self._finished:
            if not self._input:
                self._input = self._source.read(_CHUNK)
                if not self._input:
                    raise ArchiveRejected(corrupt("the gzip stream ends early"))
            try:
                data = self._decoder.decompress(self._input, want)
            except zlib.error as error:
                raise ArchiveRejected(corrupt(error)) from error
            self._input = self._decoder.unconsumed_tail
            if self._decoder.eof:
                self._next_gzip_member()
            if data:
                return data
        return b""

    def _next_gzip_member(self) -> None:
        """gzip allows several members one after the other; anything else after the end is
        ignored, as gzip -d and tar do with trailing zeros."""
        rest = self._decoder.unused_data + self._input
        if rest.startswith(_GZIP_MAGIC):
            self._decoder = zlib.decompressobj(_GZIP_WBITS)
            self._input = rest
        else:
            self._finished = True
            self._input = b""

    def write(self, data: bytes, /) -> int:
        raise OSError("read-only stream")

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, /) -> int:
        raise OSError("the stream cannot seek")

    def close(self) -> None:
        self._finished = True


def read_members(
    source: IO[bytes], rules: ArchiveRules, cancelled: threading.Event | None = None
) -> Generator[tuple[tarfile.TarFile, tarfile.TarInfo, Verdict | None], None, None]:
    """Each member of the gzip'd tar read from `source`, with the rules' verdict on it.

    The caller may read or extract a member's data before asking for the next one; whatever it
    leaves is skipped. Refusals of the whole archive (size, member count, headers, corrupt
    bytes, an empty archive) are raised as ArchiveRejected.
    """
    stream = _GuardedStream(source, rules, cancelled)
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=_RECORD) as archive:
            while (member := archive.next()) is not None:
                # tarfile's offset is where it will look for the next header once this member's
                # data (whatever its type or sparse map) is read or skipped.
                stream.member_read(member, archive.offset)
                check_cancelled(cancelled)
                verdict = rules.judge(member)
                if verdict is not None and verdict.member is None:
                    raise verdict.rejected()
                yield archive, member, verdict
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveRejected(corrupt(error)) from error
    final = rules.finish()
    if final is not None:
        raise final.rejected()
