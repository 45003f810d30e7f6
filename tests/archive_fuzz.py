"""Generated tar archives, hostile and ordinary, and what must hold for each one.

Used by tests/unit/test_archive_fuzz.py (a modest number of examples in `make test`) and by
bench/fuzz_archives.py (a longer campaign that records what it tried in docs/benchmarks.md).

For every archive: `lint`'s member rules and the emulator's extraction give the same verdict (the
same member, the same words); a refused archive leaves nothing behind; an accepted one has
every path and link resolving inside the model folder, only files, folders and links in it,
entries and bytes within the caps; nothing is written outside; peak memory stays bounded.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from mme_local.artifacts.lint import check_members
from mme_local.artifacts.rules import ENTRY_BYTES, MAX_MEMBERS, ArchiveRejected
from mme_local.cache.extract import extract_stream

MAX_PEAK_MEMORY = 32 << 20
"""Most memory one archive of the campaign may take to lint and extract (tracemalloc's peak)."""

KINDS = ("file", "dir", "symlink", "hardlink")
# Names that make trouble: '..', '.', empty, the longest and one past the longest name Linux
# allows, a non-UTF-8 byte (as tarfile decodes it), a control character, a backslash.
AWKWARD = ["..", ".", "", "n" * 255, "n" * 256, "\udcff", "a\nb", "a\\b", " "]
ORDINARY = ["m", "1", "2", "a", "b", "c", "d", "config.pbtxt", "model.pt"]


@dataclass(frozen=True)
class Spec:
    """One member to write: its kind, path, link target, data size and extra pax records."""

    kind: str
    name: str
    target: str = ""
    size: int = 0
    pax: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Archive:
    members: tuple[Spec, ...]
    pax_format: bool
    limit: int
    cut: float | None = None
    """Keep only this fraction of the tar bytes, in a well-formed gzip stream."""

    def data(self) -> bytes:
        buffer = io.BytesIO()
        form = tarfile.PAX_FORMAT if self.pax_format else tarfile.GNU_FORMAT
        with tarfile.open(fileobj=buffer, mode="w", format=form) as tar:
            for spec in self.members:
                info = tarfile.TarInfo(spec.name)
                info.type = {
                    "file": tarfile.REGTYPE,
                    "dir": tarfile.DIRTYPE,
                    "symlink": tarfile.SYMTYPE,
                    "hardlink": tarfile.LNKTYPE,
                }[spec.kind]
                info.linkname = spec.target
                info.size = spec.size if spec.kind == "file" else 0
                info.pax_headers = dict(spec.pax)
                body = io.BytesIO(bytes(range(256)) * (info.size // 256 + 1))
                tar.addfile(info, body if info.size else None)
        raw = buffer.getvalue()
        if self.cut is not None:
            raw = raw[: int(len(raw) * self.cut)]
        return gzip.compress(raw, compresslevel=1)


def _weighted(*choices: tuple[int, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    return st.one_of(*(strategy for weight, strategy in choices for _ in range(weight)))


def _component() -> st.SearchStrategy[str]:
    # A small pool, so that names collide: duplicates, links over folders, links that an
    # earlier link's target walks through.
    return _weighted(
        (12, st.sampled_from(ORDINARY)),
        (2, st.sampled_from(AWKWARD)),
        (1, st.text(alphabet="ab.", min_size=1, max_size=3)),
    )


def paths() -> st.SearchStrategy[str]:
    """Mostly short relative paths from a small pool, some absolute, './'-prefixed, ending in
    '/' or deep."""
    short = st.lists(_component(), min_size=1, max_size=5).map("/".join)
    deep = st.integers(min_value=28, max_value=40).map(lambda n: "/".join(["d"] * n))
    return _weighted(
        (12, short),
        (1, short.map(lambda p: "./" + p)),
        (1, short.map(lambda p: "/" + p)),
        (1, short.map(lambda p: p + "/")),
        (1, deep),
        (1, st.sampled_from(["", ".", "./", "/"])),
    )


def targets() -> st.SearchStrategy[str]:
    ups = st.integers(min_value=0, max_value=4).map(lambda n: "../" * n)
    return _weighted(
        (4, st.tuples(ups, paths()).map("".join)),
        (2, paths()),
        (1, st.sampled_from(["", ".", "..", "/etc/passwd", "../" * 600, "a/" * 600])),
    )


def _pax() -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(
        *[st.just({})] * 8,
        st.builds(lambda n: {"comment": "c" * n}, st.integers(min_value=0, max_value=5000)),
        st.builds(lambda p: {"path": p}, paths()),
        st.builds(lambda p: {"path": p + "\0x"}, paths()),
        st.builds(lambda t: {"linkpath": t}, targets()),
        st.sampled_from([{"mtime": "1e400"}, {"mtime": "nan"}, {"mtime": "-5.5"}]),
        st.sampled_from([{"size": "0"}, {"size": "99999"}, {"uid": "-1"}, {"mode": "x"}]),
    )


def _plain_paths() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=4).map("/".join)


def _plain_targets() -> st.SearchStrategy[str]:
    ups = st.integers(min_value=0, max_value=3).map(lambda n: "../" * n)
    return st.tuples(ups, _plain_paths()).map("".join)


def _spellings(name: str) -> st.SearchStrategy[str]:
    """`name` and other spellings of it, some of which name no file ('x/', 'x/.')."""
    return st.sampled_from(
        [*[name] * 6, "./" + name, name.replace("/", "//"), name + "/", name + "/.", "a/../" + name]
    )


@st.composite
def specs(draw: st.DrawFn, earlier: tuple[str, ...] = ()) -> Spec:
    """One member, plain (names from a small pool, which still collide and link oddly) or, one
    time in eight, with awkward names, targets and pax records. A hard link mostly names an
    earlier file, in one of several spellings, as a valid one must."""
    hostile = draw(st.integers(min_value=0, max_value=7)) == 0
    kind = draw(st.sampled_from(KINDS))
    name = draw(paths() if hostile else _plain_paths())
    target = ""
    if kind == "symlink":
        target = draw(targets() if hostile else _plain_targets())
    elif kind == "hardlink":
        if earlier and draw(st.integers(min_value=0, max_value=3)) > 0:
            target = draw(st.sampled_from(earlier).flatmap(_spellings))
        else:
            target = draw(targets() if hostile else _plain_paths())
    size = 0
    if kind == "file":
        size = draw(st.one_of(st.integers(0, 600), st.sampled_from([4096, 40_000])))
    return Spec(kind, name, target, size, draw(_pax()) if hostile else {})


@st.composite
def archives(draw: st.DrawFn) -> Archive:
    # Often a well-formed model first, so that what follows is judged against a real tree.
    base = [
        Spec("file", "m/config.pbtxt", size=40),
        Spec("dir", "m/1/"),
        Spec("file", "m/1/model.pt", size=100),
    ]
    members = base if draw(st.booleans()) else []
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        files = tuple(m.name for m in members if m.kind == "file")
        members.append(draw(specs(files)))
    return Archive(
        tuple(members),
        draw(st.booleans()),
        draw(st.sampled_from([48 << 10, 1 << 20])),
        draw(st.one_of(*[st.none()] * 9, st.floats(min_value=0.0, max_value=1.0))),
    )


@dataclass(frozen=True)
class Outcome:
    verdict: tuple[str | None, str] | None
    """None when both accepted the archive, else the member and message both refused it with."""
    seconds: float
    peak_bytes: int


def check(archive: Archive) -> Outcome:
    """Lints and extracts `archive`, asserting every property; returns what happened."""
    data = archive.data()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        path = tmp / "a.tar.gz"
        path.write_bytes(data)
        outside = tmp / "outside"
        outside.mkdir()
        (outside / "keep").write_bytes(b"keep")
        destination = tmp / "cache" / "model"
        destination.parent.mkdir()
        started = time.perf_counter()
        tracemalloc.start()
        try:
            errors = [p for p in check_members(path, archive.limit) if p.severity == "error"]
            from_lint = (errors[0].member, errors[0].message) if errors else None
            try:
                expanded = extract_stream(io.BytesIO(data), destination, archive.limit)
                from_extraction = None
            except ArchiveRejected as error:
                from_extraction = (error.member, error.message)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        seconds = time.perf_counter() - started
        assert from_lint == from_extraction, (from_lint, from_extraction)
        assert peak < MAX_PEAK_MEMORY, f"peak memory {peak} bytes"
        if from_extraction is not None:
            assert list(destination.parent.iterdir()) == [], "a refused archive leaves nothing"
            assert "\n" not in from_extraction[1]
        else:
            _check_tree(destination, archive.limit, expanded)
        assert sorted(p.name for p in tmp.iterdir()) == ["a.tar.gz", "cache", "outside"]
        assert [p.name for p in outside.iterdir()] == ["keep"]
        assert (outside / "keep").read_bytes() == b"keep"
    return Outcome(from_extraction, seconds, peak)


def _check_tree(root: Path, limit: int, expanded: int) -> None:
    """Every entry resolves inside `root`; entries and bytes are within the caps."""
    real_root = os.path.realpath(root)
    entries = 0
    data = 0
    blocks = 0
    inodes: set[int] = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            entries += 1
            full = os.path.join(folder, name)
            resolved = os.path.realpath(full)
            assert os.path.commonpath([resolved, real_root]) == real_root, (full, resolved)
            info = os.lstat(full)
            kind = stat.S_IFMT(info.st_mode)
            assert kind in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK), (full, kind)
            if info.st_ino not in inodes:
                inodes.add(info.st_ino)
                blocks += info.st_blocks * 512
                if kind == stat.S_IFREG:
                    data += info.st_size
    assert entries <= MAX_MEMBERS
    assert data + entries * ENTRY_BYTES == expanded, (data, entries, expanded)
    assert expanded <= limit
    # What the disk really spent: one block per entry covers folders, small files' last blocks
    # and small links, with a folder's own listing on top (a few hundred bytes a name).
    assert blocks <= expanded + entries * 512, (blocks, expanded)
