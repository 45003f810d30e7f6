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
    ExtractionCancelled,
    Verdict,
    corrupt,
)

_CHUNK = 64 << 10
_RECORD = tarfile.RECORDSIZE
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_GZIP_MAGIC = b"\x1f\x8b"
# The fixed header blocks and padding of every member, on top of what the members hold.
_TAR_OVERHEAD = MAX_MEMBERS * 2 * tarfile.BLOCKSIZE + MAX_TOTAL_HEADER_BYTES + 2 * _RECORD
# tarfile pulls whole records, so a phase may see up to two records of its neighbours' bytes.
_SLACK = 4 * _RECORD


def check_cancelled(cancelled: threading.Event | None) -> None:
    if cancelled is not None and cancelled.is_set():
        raise ExtractionCancelled("extraction cancelled")


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
        self._in_headers = True
        self._phase_start = 0
        self._phase_budget = MAX_HEADER_BYTES + _SLACK
        self._header_total = 0

    def headers_next(self, data_expected: int) -> None:
        """tarfile is about to read the next member's headers, after skipping what the caller
        left unread of `data_expected` bytes of the previous member's data."""
        unread = max(0, data_expected - (self._position - self._phase_start))
        self._in_headers = True
        self._phase_start = self._position
        self._phase_budget = MAX_HEADER_BYTES + _SLACK + unread

    def data_next(self) -> None:
        """tarfile returned a member; what it reads now is that member's data."""
        self._header_total += self._position - self._phase_start
        self._in_headers = False
        self._phase_start = self._position

    def read(self, size: int = -1, /) -> bytes:
        check_cancelled(self._cancelled)
        want = size if size > 0 else _CHUNK
        data = self._decompress(want)
        self._position += len(data)
        if self._position > self._rules.limit.max_bytes + _TAR_OVERHEAD:
            raise ArchiveRejected(self._rules.limit.refusal())
        if self._in_headers:
            phase = self._position - self._phase_start
            if phase > self._phase_budget:
                raise ArchiveRejected(HEADER_TOO_LARGE)
            if self._header_total + phase > MAX_TOTAL_HEADER_BYTES:
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
                stream.data_next()
                check_cancelled(cancelled)
                verdict = rules.judge(member)
                if verdict is not None and verdict.member is None:
                    raise verdict.rejected()
                yield archive, member, verdict
                expected = member.size if member.isreg() else 0
                stream.headers_next(-(-expected // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
    except (tarfile.TarError, EOFError) as error:
        raise ArchiveRejected(corrupt(error)) from error
    final = rules.finish()
    if final is not None:
        raise final.rejected()
