"""Safe extraction: every refused archive leaves nothing behind and writes nothing outside."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mme_local.cache.extract import ArchiveRejected, extract_stream
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
