"""One table of good and bad members, judged by `lint` and by extraction alike."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mme_local.artifacts import rules
from mme_local.artifacts.lint import lint_archive
from mme_local.artifacts.rules import ArchiveRejected, format_bytes
from mme_local.cache.extract import extract_stream

CONFIG = b'name: "bert"\nplatform: "pytorch_libtorch"\nmax_batch_size: 0\n'
MODEL = {"bert/config.pbtxt": CONFIG, "bert/1/model.pt": b"weights"}


@dataclass(frozen=True)
class Member:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""


@dataclass(frozen=True)
class Case:
    members: list[Member]
    refusal: str | None
    """The start of the refusal both give, or None when both accept the archive."""
    member: str | None = None
    """The member the refusal names (None: the archive as a whole)."""
    limit: int = 1 << 20
    model: dict[str, bytes] = field(default_factory=lambda: dict(MODEL))


def link(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, link=target)


def hard(name: str, target: str) -> Member:
    return Member(name, tarfile.LNKTYPE, link=target)


def build(case: Case) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        members = [Member(n, data=d) for n, d in case.model.items()] + case.members
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.linkname, info.size = member.kind, member.link, len(member.data)
            tar.addfile(info, io.BytesIO(member.data) if member.data else None)
    return buffer.getvalue()


CASES: dict[str, Case] = {
    "a plain model": Case([], None),
    "an internal symlink": Case([link("bert/1/alias.pt", "model.pt")], None),
    "a symlink up and back in": Case([link("bert/1/w.pt", "../1/model.pt")], None),
    "a symlink to a folder": Case([link("bert/latest", "1")], None),
    "a hard link to an earlier file": Case([hard("bert/1/copy.pt", "bert/1/model.pt")], None),
    "'./' names from `tar -C dir .`": Case(
        [Member("./", tarfile.DIRTYPE)],
        None,
        model={f"./{name}": data for name, data in MODEL.items()},
    ),
    "an absolute path": Case([Member("/etc/evil", data=b"x")], "absolute member path", "/etc/evil"),
    "'..'": Case([Member("bert/../../evil", data=b"x")], "member path escapes", "bert/../../evil"),
    "a backslash": Case(
        [Member("bert\\1\\x.pt", data=b"x")], "member path contains a backslash", "bert\\1\\x.pt"
    ),
    "a symlink to an absolute path": Case(
        [link("bert/1/passwd", "/etc/passwd")],
        "symbolic link points outside the archive",
        "bert/1/passwd",
    ),
    "a symlink up and out": Case(
        [link("bert/1/passwd", "../../../etc/passwd")],
        "symbolic link points outside the archive",
        "bert/1/passwd",
    ),
    "a symlink out through another symlink": Case(
        [link("bert/up", ".."), link("bert/up/out", "..")],
        "member path goes through the symbolic link 'bert/up'",
        "bert/up/out",
    ),
    "a symlink whose '..' follows a link to the root": Case(
        [link("root", "."), link("bert/1/etc", "../../root/../etc")],
        "symbolic link target has '..' after a folder name",
        "bert/1/etc",
    ),
    "the review's link that a later link makes escape": Case(
        [link("bert/d/a", "c/../../../etc/passwd"), link("bert/d/c", "../..")],
        "symbolic link target has '..' after a folder name",
        "bert/d/a",
    ),
    "a symlink through a later link": Case(
        [link("bert/d/a", "c/config.pbtxt"), link("bert/d/c", "../..")],
        "symbolic link's target passes through or is another symbolic link ('bert/d/c')",
        "bert/d/a",
    ),
    "a symlink through an earlier link": Case(
        [link("bert/d/c", "../.."), link("bert/d/a", "c/config.pbtxt")],
        "symbolic link's target passes through or is another symbolic link ('bert/d/c')",
        "bert/d/a",
    ),
    "a symlink to an earlier symlink (a chain)": Case(
        [link("bert/1/b", "model.pt"), link("bert/1/a", "b")],
        "symbolic link's target passes through or is another symbolic link ('bert/1/b')",
        "bert/1/a",
    ),
    "a symlink to a later symlink (a chain)": Case(
        [link("bert/1/a", "b"), link("bert/1/b", "model.pt")],
        "symbolic link's target passes through or is another symbolic link ('bert/1/b')",
        "bert/1/a",
    ),
    "a symlink with a target deeper than a model folder needs": Case(
        [link("bert/1/x", "a/" * 40)],
        "symbolic link target is deeper than 32 folders",
        "bert/1/x",
    ),
    "a file written through a symlinked folder": Case(
        [link("bert/latest", "1"), Member("bert/latest/x.pt", data=b"x")],
        "member path goes through the symbolic link 'bert/latest'",
        "bert/latest/x.pt",
    ),
    "a file twice": Case(
        [Member("bert/1/model.pt", data=b"again")],
        "member appears twice in the archive",
        "bert/1/model.pt",
    ),
    "a symlink over a file": Case(
        [link("bert/1/model.pt", "x")], "member appears twice in the archive", "bert/1/model.pt"
    ),
    "a hard link over a file": Case(
        [Member("bert/1/x.pt", data=b"x"), hard("bert/1/x.pt", "bert/1/model.pt")],
        "member appears twice in the archive",
        "bert/1/x.pt",
    ),
    "a folder over a symlink": Case(
        [link("bert/2", "1"), Member("bert/2", tarfile.DIRTYPE)],
        "folder 'bert/2' replaces a file or link of the same name",
        "bert/2",
    ),
    "a hard link to a symlink": Case(
        [link("bert/1/alias.pt", "model.pt"), hard("bert/1/copy.pt", "bert/1/alias.pt")],
        "hard link to 'bert/1/alias.pt', which is not a file earlier",
        "bert/1/copy.pt",
    ),
    "a hard link to 'file/'": Case(
        [hard("bert/1/copy.pt", "bert/1/model.pt/")],
        "hard link to 'bert/1/model.pt/', which is not a file earlier",
        "bert/1/copy.pt",
    ),
    "a hard link to './file' (the same file)": Case(
        [hard("bert/1/copy.pt", "./bert/./1//model.pt")], None
    ),
    "a hard link through '..'": Case(
        [hard("bert/1/copy.pt", "bert/2/../1/model.pt")],
        "hard link points outside",
        "bert/1/copy.pt",
    ),
    "a path deeper than a model folder needs": Case(
        [Member("bert/1/" + "d/" * 40 + "x.pt", data=b"x")],
        "member path is deeper than 32 folders",
        "bert/1/" + "d/" * 40 + "x.pt",
    ),
    "500 nested folders": Case(
        [Member("d/" * 500, tarfile.DIRTYPE)],
        "member path is deeper than 32 folders",
        "d/" * 499 + "d",
    ),
    "a symlink with an 80 KB target": Case(
        [link("bert/1/x", "a/" * 40_000)],
        "symbolic link target is longer than 1024 bytes",
        "bert/1/x",
    ),
    "a 2 KB path": Case(
        [Member("bert/1/" + "n/" * 1000 + "x", data=b"x")],
        "member path is too long",
        "bert/1/" + "n/" * 1000 + "x",
    ),
    "folders count toward the size cap": Case(
        [Member(f"bert/{i}/", tarfile.DIRTYPE) for i in range(300)],
        "expands to more than 1048576 bytes",
    ),
    "folders a path implies count toward the size cap": Case(
        [Member(f"bert/{i}/a/b/c/d/x", data=b"") for i in range(60)],
        "expands to more than 1048576 bytes",
    ),
    "an empty symlink": Case(
        [link("bert/1/x", "")], "symbolic link has an empty target", "bert/1/x"
    ),
    "a hard link out": Case(
        [hard("bert/1/passwd", "/etc/passwd")], "hard link points outside", "bert/1/passwd"
    ),
    "a hard link up and out": Case(
        [hard("bert/1/passwd", "../etc/passwd")], "hard link points outside", "bert/1/passwd"
    ),
    "a hard link to a later file": Case(
        [hard("bert/1/copy.pt", "bert/1/later.pt"), Member("bert/1/later.pt", data=b"x")],
        "hard link to 'bert/1/later.pt', which is not a file earlier",
        "bert/1/copy.pt",
    ),
    "a character device": Case(
        [Member("bert/1/dev", tarfile.CHRTYPE)], "device or FIFO", "bert/1/dev"
    ),
    "a FIFO": Case([Member("bert/1/fifo", tarfile.FIFOTYPE)], "device or FIFO", "bert/1/fifo"),
    "a file named '.'": Case([Member(".", data=b"x")], "member has an empty name or '.'", "."),
    "a file named ''": Case([Member("", data=b"x")], "member has an empty name or '.'", ""),
    "a file replacing a folder": Case(
        [Member("bert/1", data=b"x")], "member replaces the folder 'bert/1'", "bert/1"
    ),
    "a file under a file": Case(
        [Member("bert/1/model.pt/x", data=b"x")],
        "member path goes through the file 'bert/1/model.pt'",
        "bert/1/model.pt/x",
    ),
    "too big": Case(
        [Member("bert/1/big", data=b"\0" * 2000)], "expands to more than 1000 bytes", limit=1000
    ),
    "a 2 MiB name": Case(
        [Member("bert/1/" + "n" * (2 << 20), data=b"x")], "member headers are larger than 1 MiB"
    ),
    "nothing in it": Case([], "archive is empty", model={}),
}


def lint_verdict(data: bytes, tmp_path: Path, limit: int) -> tuple[str | None, str] | None:
    path = tmp_path / "a.tar.gz"
    path.write_bytes(data)
    errors = [p for p in lint_archive(path, max_expanded_bytes=limit) if p.severity == "error"]
    return (errors[0].member, errors[0].message) if errors else None


def extract_verdict(data: bytes, tmp_path: Path, limit: int) -> tuple[str | None, str] | None:
    destination = tmp_path / "cache" / "model"
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        extract_stream(io.BytesIO(data), destination, limit)
    except ArchiveRejected as error:
        assert list(destination.parent.iterdir()) == [], "a refused archive leaves nothing"
        return error.member, error.message
    return None


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_lint_and_extraction_give_the_same_verdict(case: Case, tmp_path: Path) -> None:
    data = build(case)
    from_lint = lint_verdict(data, tmp_path, case.limit)
    from_extraction = extract_verdict(data, tmp_path, case.limit)
    assert from_lint == from_extraction
    if case.refusal is None:
        assert from_lint is None
    else:
        assert from_lint is not None
        assert from_lint[0] == case.member
        assert from_lint[1].startswith(case.refusal), from_lint[1]
        assert "\n" not in from_lint[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "cache"]


def test_an_archive_with_an_internal_symlink_gets_the_same_verdict_from_both(
    tmp_path: Path,
) -> None:
    data = build(Case([link("bert/1/alias.pt", "model.pt")], None))
    assert lint_verdict(data, tmp_path, 1 << 20) is None
    assert extract_verdict(data, tmp_path, 1 << 20) is None
    alias = tmp_path / "cache" / "model" / "bert" / "1" / "alias.pt"
    assert alias.is_symlink()
    assert alias.read_bytes() == b"weights"


def test_the_member_count_is_capped_for_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "MAX_MEMBERS", 3)
    data = build(Case([Member("bert/1/a", data=b"a"), Member("bert/1/b", data=b"b")], None))
    expected = (None, rules.TOO_MANY_MEMBERS)
    assert lint_verdict(data, tmp_path, 1 << 20) == expected
    assert extract_verdict(data, tmp_path, 1 << 20) == expected


def test_folders_count_toward_the_member_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "MAX_MEMBERS", 10)
    data = build(Case([Member("bert/1/" + "/".join("abcdefgh") + "/x", data=b"x")], None))
    expected = (None, rules.TOO_MANY_MEMBERS)
    assert lint_verdict(data, tmp_path, 1 << 20) == expected
    assert extract_verdict(data, tmp_path, 1 << 20) == expected


def test_a_name_with_a_nul_byte_is_refused_by_both(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in MODEL.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bert/1/x")
        info.pax_headers = {"path": "bert/1/a\0b"}
        tar.addfile(info)
    data = buffer.getvalue()
    expected = lint_verdict(data, tmp_path, 1 << 20)
    assert expected is not None
    assert expected[1].startswith("member path contains a NUL byte")
    assert extract_verdict(data, tmp_path, 1 << 20) == expected


@pytest.mark.parametrize("mtime", ["1e400", "nan", "-1e30", "99999999999999999999"])
def test_an_impossible_modification_time_is_refused_by_both(mtime: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in MODEL.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bert/1/x")
        info.pax_headers = {"mtime": mtime}
        tar.addfile(info)
    data = buffer.getvalue()
    expected = lint_verdict(data, tmp_path, 1 << 20)
    assert expected is not None
    assert expected == ("bert/1/x", expected[1])
    assert expected[1].startswith("member has an impossible modification time")
    assert extract_verdict(data, tmp_path, 1 << 20) == expected


@pytest.mark.parametrize("cut_in", ["bert/config.pbtxt", "bert/1/model.pt"])
def test_a_tar_cut_short_inside_a_whole_gzip_is_corrupt_for_both(
    cut_in: str, tmp_path: Path
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in MODEL:
            data = bytes(range(256)) * 400 if name == cut_in else MODEL[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            if name == cut_in:
                break
    data = gzip.compress(raw.getvalue()[: tarfile.BLOCKSIZE * 100])
    expected = (None, rules.corrupt("unexpected end of data"))
    assert lint_verdict(data, tmp_path, 1 << 20) == expected
    assert extract_verdict(data, tmp_path, 1 << 20) == expected


def test_the_checker_stops_when_cancelled() -> None:
    cancelled = threading.Event()
    checker = rules.ArchiveRules(cancelled=cancelled)
    assert checker.judge(tarfile.TarInfo("bert/config.pbtxt")) is None
    cancelled.set()
    with pytest.raises(rules.ExtractionCancelled):
        checker.judge(tarfile.TarInfo("bert/1/model.pt"))
    with pytest.raises(rules.ExtractionCancelled):
        checker.finish()


def test_the_size_refusal_names_its_limit() -> None:
    assert format_bytes(64 << 30) == "64 GiB"
    assert format_bytes(int(1.2 * (1 << 30))) == "1.2 GiB"
    assert format_bytes(1000) == "1000 B"
    refusal = rules.SizeLimit(int(1.2 * (1 << 30)), "the remaining disk budget").refusal()
    assert "the remaining disk budget (1.2 GiB)" in refusal
    assert "the archive size cap (64 GiB)" in rules.SizeLimit(rules.MAX_ARCHIVE_BYTES).refusal()
