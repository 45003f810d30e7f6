"""What a model.tar.gz may hold: one set of member rules for `lint` and for extraction.

`lint` (and so `deploy`'s pre-flight) and the emulator's extraction judge every member with the
same `ArchiveRules`, so an archive that passes one is accepted by the other, with the same
message when it is not. The rules follow tarfile's `filter="data"` (what the SageMaker SDK
extracts with): links are allowed when they stay inside the model folder, resolved through the
links seen so far the way the file system would resolve them.
"""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass, field

MAX_ARCHIVE_BYTES = 64 << 30
"""Default cap on the bytes an archive may expand to, for `lint` and for the emulator."""
MAX_MEMBERS = 100_000
MAX_HEADER_BYTES = 1 << 20
"""Most bytes of headers (long names, pax records) before one member."""
MAX_TOTAL_HEADER_BYTES = 128 << 20
"""Most bytes of headers in a whole archive: tarfile keeps every member's header in memory."""
_MAX_PATH_BYTES = 4096  # Linux's PATH_MAX and NAME_MAX
_MAX_NAME_BYTES = 255
_MAX_LINK_HOPS = 40  # Linux's own limit on symbolic links followed while resolving one path

REBUILD = "rebuild it with `tar -czf model.tar.gz -C <parent> <model-folder>`"
EMPTY = "archive is empty: put one Triton model folder in it"
TOO_MANY_MEMBERS = (
    f"archive has more than {MAX_MEMBERS} members: keep fewer files in one model archive"
)
HEADER_TOO_LARGE = (
    "member headers are larger than 1 MiB (very long names or pax records): rebuild the "
    "archive with shorter paths"
)
HEADERS_TOO_LARGE_IN_ALL = (
    f"the archive's headers add up to more than {MAX_TOTAL_HEADER_BYTES >> 20} MiB (very long "
    "names or pax records): rebuild the archive with shorter paths"
)


class ArchiveRejected(ValueError):
    """The archive is corrupt, unsafe to extract, or too big; `message` says which and why."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(f"member {member!r}: {message}" if member is not None else message)
        self.message = message
        self.member = member


class ExtractionCancelled(Exception):
    """The caller cancelled an extraction before it finished."""


def format_bytes(count: int) -> str:
    """`count` in the largest binary unit that keeps it at or above 1, to one decimal."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while power < len(units) - 1 and count >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return f"{count} B"
    return f"{count / 1024**power:.1f}".removesuffix(".0") + f" {units[power]}"


@dataclass(frozen=True)
class SizeLimit:
    """A cap on the expanded size, with the reason for it (named in the refusal)."""

    max_bytes: int
    reason: str = "the archive size cap"

    def refusal(self) -> str:
        n = self.max_bytes
        return (
            f"expands to more than {n} bytes: it expands past the limit of {n} bytes, "
            f"{self.reason} ({format_bytes(n)}); make the model smaller or raise that limit"
        )


def corrupt(detail: object) -> str:
    """The refusal for bytes that are not a gzip-compressed tar."""
    return f"not a readable tar.gz ({detail}): not a valid gzip-compressed tar archive; {REBUILD}"


@dataclass(frozen=True)
class Verdict:
    """Why a member is refused. `member` is None when the whole archive is refused."""

    member: str | None
    message: str

    def rejected(self) -> ArchiveRejected:
        return ArchiveRejected(self.message, self.member)


def header_bytes(member: tarfile.TarInfo) -> int:
    """The size of what a member's headers carry beyond the fixed 512-byte block."""
    pax = sum(len(key) + len(value) for key, value in member.pax_headers.items())
    return len(member.name) + len(member.linkname) + pax


@dataclass
class ArchiveRules:
    """Judges the members of one archive in order; keeps what earlier members created."""

    limit: SizeLimit = field(default_factory=lambda: SizeLimit(MAX_ARCHIVE_BYTES))
    members: int = 0
    expanded: int = 0
    _content: bool = False
    _files: set[str] = field(default_factory=set)
    _dirs: set[str] = field(default_factory=set)
    _links: dict[str, str] = field(default_factory=dict)
    """Symbolic links: where each one is, as a resolved path -> its target."""

    def judge(self, member: tarfile.TarInfo) -> Verdict | None:
        """None if `member` may be extracted (and it is recorded), else why not."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            return Verdict(None, TOO_MANY_MEMBERS)
        if header_bytes(member) > MAX_HEADER_BYTES:
            return Verdict(None, HEADER_TOO_LARGE)
        if member.isreg():
            self.expanded += member.size
            if self.expanded > self.limit.max_bytes:
                return Verdict(None, self.limit.refusal())
        message = self._refusal(member)
        return Verdict(member.name, message) if message is not None else None

    def finish(self) -> Verdict | None:
        """Why the archive as a whole is refused once every member was judged, if it is."""
        return None if self._content else Verdict(None, EMPTY)

    def _refusal(self, member: tarfile.TarInfo) -> str | None:
        name = member.name
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if name.startswith("/"):
            return (
                f"absolute member path ({name!r} is an absolute path): store paths relative to "
                "the archive root"
            )
        if "\\" in name:
            return (
                "member path contains a backslash (a Windows separator): rebuild it with `tar` "
                "on Linux or macOS, which separates folders with '/'"
            )
        if len(name.encode()) > _MAX_PATH_BYTES or any(
            len(part.encode()) > _MAX_NAME_BYTES for part in parts
        ):
            return (
                f"member path is too long (over {_MAX_PATH_BYTES} bytes, or a name over "
                f"{_MAX_NAME_BYTES}): Linux cannot create it; use shorter names"
            )
        if ".." in parts:
            return f"member path escapes the model folder ('..'): {REBUILD} from the model's parent"
        if member.ischr() or member.isblk() or member.isfifo():
            return (
                "device or FIFO member: an archive may hold only files, folders and links; "
                "remove this device, FIFO or other special file"
            )
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            return f"unsupported member type {member.type!r}: keep only files, folders and links"
        if not parts and not member.isdir():
            return f"member has an empty name or '.' as its name: {REBUILD}"
        return self._place(member, parts)

    def _place(self, member: tarfile.TarInfo, parts: list[str]) -> str | None:
        """Checks where the member lands once earlier links are followed, and records it."""
        parent = self._resolve(parts[:-1])
        if parent is None:
            return (
                "member path goes through a symbolic link that leads outside the archive: "
                "store the files under their real folder"
            )
        through_file = next(
            (p for i in range(1, len(parent) + 1) if (p := "/".join(parent[:i])) in self._files),
            None,
        )
        if through_file is not None:
            return f"member path goes through {through_file!r}, which is a file: {REBUILD}"
        if not parts:
            return None
        where = "/".join([*parent, parts[-1]])
        final = self._resolve(parts)
        if final is None:
            return f"member is written through a link that leads outside the archive: {REBUILD}"
        if member.isdir():
            if where in self._files or "/".join(final) in self._files:
                return f"folder {where!r} replaces a file of the same name: remove one of them"
            self._dirs.add("/".join(final))
        elif where in self._dirs or "/".join(final) in self._dirs:
            return f"member replaces the folder {where!r} of the same name: remove one of them"
        elif member.issym():
            refusal = self._symlink_refusal(member, parent)
            if refusal is not None:
                return refusal
            self._files.discard(where)
            self._links[where] = member.linkname
        elif member.islnk():
            refusal = self._hardlink_refusal(member)
            if refusal is not None:
                return refusal
            self._files.add(where)
        else:
            self._files.add("/".join(final))
            self._links.pop(where, None)
        self._dirs.update("/".join(parent[:i]) for i in range(1, len(parent) + 1))
        self._content = True
        return None

    def _symlink_refusal(self, member: tarfile.TarInfo, parent: list[str]) -> str | None:
        target = member.linkname
        outside = (
            f"symbolic link points outside the archive ({member.name} is a link to {target}): "
            "store the file itself"
        )
        if not target:
            return "symbolic link has an empty target: store the file itself"
        if target.startswith("/") or self._resolve([*parent, *target.split("/")]) is None:
            return outside
        return None

    def _hardlink_refusal(self, member: tarfile.TarInfo) -> str | None:
        target = member.linkname
        normalized = posixpath.normpath(target) if target else ""
        if target.startswith("/") or normalized == ".." or normalized.startswith("../"):
            return (
                f"hard link points outside the archive ({member.name} is a link to {target}): "
                "store the file itself"
            )
        resolved = self._resolve(normalized.split("/"))
        if resolved is None or "/".join(resolved) not in self._files:
            return (
                f"hard link to {target!r}, which is not a file earlier in the archive: store "
                "the file itself or put its target before it"
            )
        return None

    def _resolve(self, parts: list[str]) -> list[str] | None:
        """Where `parts` leads from the archive root, following the links recorded so far.

        None when it leaves the root (through '..' or an absolute link) or loops.
        """
        resolved: list[str] = []
        pending = list(parts)
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    return None
                resolved.pop()
                continue
            target = self._links.get("/".join([*resolved, part]))
            if target is None:
                resolved.append(part)
                continue
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return None
            pending[:0] = target.split("/")
        return resolved
