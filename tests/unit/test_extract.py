"""Safe extraction: every refused archive leaves nothing behind and writes nothing outside."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from mme_local.artifacts import confinement, rules, tar_stream
from mme_local.artifacts.confinement import check_extracted
from mme_local.artifacts.rules import ENTRY_BYTES
from mme_local.cache.extract import (
    ArchiveRejected,
    ExtractionCancelled,
    SizeLimit,
    extract_stream,
)
from tests.support import tar_gz_bytes


def _extract(data: bytes, tmp_path: Path, limit: int = 1 << 20) -> Path:
    destination = tmp_path / "cache" / "abc" / "model"
    destination.parent.mkdir(parents=True, exist_ok=True)
    extract_stream(io.BytesIO(data), destination, limit)
    return destination


def _special(kind: bytes, name: str, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        tar.addfile(info)
    return buffer.getvalue()


def test_a_good_archive_is_extracted(tmp_path: Path) -> None:
    data = tar_gz_bytes({"bert/config.pbtxt": b"name: 'x'", "bert/1/model.pt": b"weights"})
    destination = _extract(data, tmp_path)
    assert (destination / "bert" / "1" / "model.pt").read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tar_gz_bytes({"/etc/evil": b"x"}), "absolute path"),
        (tar_gz_bytes({"m/../../evil": b"x"}), "escapes the model folder"),
        (tar_gz_bytes({}, links={"m/link": "/etc/passwd"}), "is a link"),
        (_special(tarfile.LNKTYPE, "m/hard", "/etc/passwd"), "is a link"),
        (_special(tarfile.CHRTYPE, "m/dev"), "device"),
        (_special(tarfile.FIFOTYPE, "m/fifo"), "device, FIFO"),
        (b"plain text, not gzip", "not a valid gzip-compressed tar archive"),
        (tar_gz_bytes({"m/a": b"x"})[:20], "not a valid gzip-compressed tar archive"),
        (tar_gz_bytes({}), "archive is empty"),
    ],
)
def test_unsafe_or_corrupt_archives_are_refused(data: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(ArchiveRejected, match=message):
        _extract(data, tmp_path)
    parent = tmp_path / "cache" / "abc"
    assert list(parent.iterdir()) == [], "no partial folder is left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_expanded_size_is_capped_while_streaming(tmp_path: Path) -> None:
    data = tar_gz_bytes({"m/a": b"\0" * 600, "m/b": b"\0" * 600})
    with pytest.raises(ArchiveRejected, match="expands past the limit of 1000 bytes"):
        _extract(data, tmp_path, limit=1000)
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


@pytest.mark.parametrize("name", ["", ".", "./"])
def test_a_file_with_an_empty_or_dot_name_is_a_bad_archive(name: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveRejected, match=r"empty name or '\.'"):
        _extract(buffer.getvalue(), tmp_path)
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def _long_name_bomb(name_bytes: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("m/" + "a" * name_bytes)
        tar.addfile(info)
    return buffer.getvalue()


def _pax_bomb(value_bytes: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("m/a")
        info.pax_headers = {"comment": "b" * value_bytes}
        tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize("bomb", [_long_name_bomb, _pax_bomb], ids=["gnu-long-name", "pax"])
def test_huge_headers_are_refused_before_tarfile_holds_them(
    bomb: Callable[[int], bytes], tmp_path: Path
) -> None:
    data = bomb(40 << 20)
    assert len(data) < 200_000, "a few kilobytes of gzip that expand to 40 MB of header"
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRejected, match="headers are larger than 1 MiB"):
            _extract(data, tmp_path, limit=1 << 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak memory {peak} bytes"
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def _folders(count: int, comment_bytes: int = 0) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for i in range(count):
            info = tarfile.TarInfo(f"m/{i}/")
            info.type = tarfile.DIRTYPE
            if comment_bytes:
                info.pax_headers = {"comment": "c" * comment_bytes}
            tar.addfile(info)
    return buffer.getvalue()


def test_every_decompressed_byte_counts_against_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Folders have no size, but their headers are bytes to decompress all the same.
    monkeypatch.setattr(tar_stream, "_TAR_OVERHEAD", 8192)
    with pytest.raises(ArchiveRejected, match="expands to more than 0 bytes"):
        _extract(_folders(50), tmp_path, limit=0)
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def test_headers_are_capped_across_the_whole_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tar_stream, "MAX_TOTAL_HEADER_BYTES", 1 << 20)
    with pytest.raises(ArchiveRejected, match="headers add up to more than"):
        _extract(_folders(20, comment_bytes=200_000), tmp_path)
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def test_the_refusal_names_the_limit_it_hit(tmp_path: Path) -> None:
    data = tar_gz_bytes({"m/a": b"\0" * 2000})
    destination = tmp_path / "cache" / "abc" / "model"
    destination.parent.mkdir(parents=True)
    limit = SizeLimit(1000, "the remaining disk budget")
    with pytest.raises(ArchiveRejected, match=r"the remaining disk budget \(1000 B\)"):
        extract_stream(io.BytesIO(data), destination, limit)
    assert list(destination.parent.iterdir()) == []


class _CancelAfterFirstRead(io.BytesIO):
    def __init__(self, data: bytes, cancelled: threading.Event) -> None:
        super().__init__(data)
        self.cancelled = cancelled

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(min(size or 4096, 4096) if size and size > 0 else 4096)
        self.cancelled.set()
        return chunk


@pytest.mark.parametrize("when", ["before", "while reading"])
def test_a_cancelled_extraction_leaves_nothing_behind(when: str, tmp_path: Path) -> None:
    data = tar_gz_bytes({f"m/{i}": bytes(range(256)) * 400 for i in range(20)})
    cancelled = threading.Event()
    if when == "before":
        cancelled.set()
        stream: io.BytesIO = io.BytesIO(data)
    else:
        stream = _CancelAfterFirstRead(data, cancelled)
    destination = tmp_path / "cache" / "abc" / "model"
    destination.parent.mkdir(parents=True)
    with pytest.raises(ExtractionCancelled):
        extract_stream(stream, destination, 1 << 30, cancelled=cancelled)
    assert list(destination.parent.iterdir()) == []
    assert not issubclass(ExtractionCancelled, ArchiveRejected)


def test_links_inside_the_model_folder_are_extracted_as_links(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("m/1/model.pt")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"weights"))
        for name, kind, target in [
            ("m/1/alias.pt", tarfile.SYMTYPE, "model.pt"),
            ("m/1/copy.pt", tarfile.LNKTYPE, "m/1/model.pt"),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    destination = _extract(buffer.getvalue(), tmp_path)
    assert (destination / "m" / "1" / "alias.pt").is_symlink()
    assert (destination / "m" / "1" / "alias.pt").read_bytes() == b"weights"
    assert (destination / "m" / "1" / "copy.pt").read_bytes() == b"weights"


def _issue_archive() -> bytes:
    """`a` looks inside when it is read; the later link `c` makes it lead to the host's root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, target in [("m/d/a", "c/../../../etc/passwd"), ("m/d/c", "../..")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def test_a_link_a_later_link_turns_outward_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRejected, match=r"'\.\.' after a folder name") as error:
        _extract(_issue_archive(), tmp_path)
    assert error.value.member == "m/d/a"
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def test_the_check_after_extraction_catches_what_the_rules_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the rules had a hole: link targets are not judged at all.
    monkeypatch.setattr(rules, "_target_refusal", lambda *args: None)
    with pytest.raises(ArchiveRejected, match="resolves outside the model folder") as error:
        _extract(_issue_archive(), tmp_path)
    assert error.value.member == "m/d/a"
    assert list((tmp_path / "cache" / "abc").iterdir()) == []


def test_the_check_after_extraction_refuses_special_files_and_counts_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "model"
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.pt").write_bytes(b"w" * 10)
    (root / "m" / "1" / "copy.pt").hardlink_to(root / "m" / "1" / "model.pt")
    (root / "m" / "latest").symlink_to("1")
    assert check_extracted(root, SizeLimit(1 << 20)) == 10 + 5 * ENTRY_BYTES
    with pytest.raises(ArchiveRejected, match="expands to more than"):
        check_extracted(root, SizeLimit(10 + 4 * ENTRY_BYTES))
    monkeypatch.setattr(confinement, "MAX_MEMBERS", 4)
    with pytest.raises(ArchiveRejected, match="files, folders and links"):
        check_extracted(root, SizeLimit(1 << 20))
    monkeypatch.undo()
    (root / "m" / "out").symlink_to("../../..")
    with pytest.raises(ArchiveRejected, match="resolves outside") as error:
        check_extracted(root, SizeLimit(1 << 20))
    assert error.value.member == "m/out"
    (root / "m" / "out").unlink()
    os.mkfifo(root / "m" / "fifo")
    with pytest.raises(ArchiveRejected, match="special file"):
        check_extracted(root, SizeLimit(1 << 20))


def test_the_check_after_extraction_stops_when_cancelled(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(ExtractionCancelled):
        check_extracted(tmp_path, SizeLimit(1 << 20), cancelled)


def test_deep_paths_are_refused_at_once_and_in_little_memory(tmp_path: Path) -> None:
    # The review's archive: 200 members at depth 2,000 took 23.5 s and +822 MiB to judge.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for i in range(200):
            tar.addfile(tarfile.TarInfo("m/" + "d/" * 2000 + str(i)))
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRejected, match="member path is too long"):
            _extract(buffer.getvalue(), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak memory {peak} bytes"
