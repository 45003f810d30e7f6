"""What a model.tar.gz may hold: one set of member rules for `lint` and for extraction.

`lint` (and so `deploy`'s pre-flight) and the emulator's extraction judge every member with the
same `ArchiveRules`, so an archive that passes one is accepted by the other, with the same
message when it is not.

The rules keep the archive's tree as it would land on disk, one node per file, folder and link,
and judge each member against it in one walk of its path (linear in the bytes of its name):

- a member's path never goes through a symbolic link or a file, and never lands on an existing
  entry (a folder may repeat); so what extraction writes is where the path says, whatever the
  links point at;
- a symbolic link's target is some '..' then names (as `ln -s ../1/model.pt` writes it); it
  must stay inside the model folder and must not pass through, or be, another symbolic link.
  Because a later link could turn a name an earlier target passes through into a link, every
  target is judged again against the complete tree in `finish()`, before extraction hands the
  folder over;
- a hard link names an earlier regular file by its path in the archive, without '..'.

Paths are capped at what a Triton model folder could need (32 levels, 1,024 bytes, 255 bytes a
name), which keeps every check cheap and every path creatable. Every entry, the folders a path
implies included, counts toward the member cap and costs `ENTRY_BYTES` toward the size cap.
"""

from __future__ import annotations

import os
import tarfile
import threading
from dataclasses import dataclass, field
from enum import Enum

MAX_ARCHIVE_BYTES = 64 << 30
"""Default cap on the bytes an archive may expand to, for `lint` and for the emulator."""
MAX_MEMBERS = 100_000
"""Most files, folders and links an archive may create, folders its paths imply included."""
MAX_HEADER_BYTES = 1 << 20
"""Most bytes of headers (long names, pax records) before one member."""
MAX_TOTAL_HEADER_BYTES = 128 << 20
"""Most bytes of headers in a whole archive: tarfile keeps every member's header in memory."""
MAX_DEPTH = 32
"""Most names in a member's path. A Triton model folder needs about five (model/1/
model.savedmodel/variables/variables.data); a Python-backend model with vendored packages ~15."""
MAX_PATH_BYTES = 1024
"""Longest member path, hard link target or symbolic link target, in bytes."""
MAX_NAME_BYTES = 255
"""Longest name of one file or folder: Linux's NAME_MAX."""
ENTRY_BYTES = 4096
"""What each file, folder and link is charged toward the size cap on top of its data: one
file-system block, what a folder takes on ext4 and at most what a file's last block wastes."""

_MAX_MTIME = 1 << 62
"""Modification times from here on (or NaN) are past what os.utime can set."""

REBUILD = "rebuild it with `tar -czf model.tar.gz -C <parent> <model-folder>`"
EMPTY = "archive is empty: put one Triton model folder in it"
TOO_MANY_MEMBERS = (
    f"archive creates more than {MAX_MEMBERS} files, folders and links (folders its paths imply "
    "count too): keep fewer files in one model archive"
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


def check_cancelled(cancelled: threading.Event | None) -> None:
    if cancelled is not None and cancelled.is_set():
        raise ExtractionCancelled("extraction cancelled")


def format_bytes(count: int) -> str:
    """`count` in the largest binary unit that keeps it at or above 1, to one decimal."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while power < len(units) - 1 and count >= 1024 ** (power + 1):
        power += 1
    if power == 0:
        return f"{count} B"
    return f"{count / 1024**power:.1f}".removesuffix(".0") + f" {units[power]}"


def printable(name: str) -> str:
    """`name` safe to print on one line: control characters and undecodable bytes escaped."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


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


class Kind(Enum):
    FOLDER = "folder"
    FILE = "file"
    """A regular file or a hard link to one."""
    LINK = "symbolic link"


class Node:
    """One entry of the archive's tree: a folder (with children), a file or a symbolic link."""

    __slots__ = ("children", "kind", "name", "parent", "target")

    def __init__(self, kind: Kind, name: str, parent: Node | None, target: str = "") -> None:
        self.kind = kind
        self.name = name
        self.parent = parent
        self.target = target
        self.children: dict[str, Node] = {}

    def path(self) -> str:
        names: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return "/".join(reversed(names))


def _names(path: str) -> list[str]:
    return [name for name in path.split("/") if name not in ("", ".")]


@dataclass
class ArchiveRules:
    """Judges the members of one archive in order; keeps the tree they create.

    `cancelled`, when set, stops `judge` and `finish` with ExtractionCancelled.
    """

    limit: SizeLimit = field(default_factory=lambda: SizeLimit(MAX_ARCHIVE_BYTES))
    cancelled: threading.Event | None = None
    members: int = 0
    """Tar members read."""
    entries: int = 0
    """Files, folders and links the accepted members create, implied folders included."""
    expanded: int = 0
    """File data plus ENTRY_BYTES per entry: what the size cap is compared with."""
    root: Node = field(default_factory=lambda: Node(Kind.FOLDER, "", None))
    _links: list[tuple[Node, str]] = field(default_factory=list)
    """Each accepted symbolic link and its member name, in archive order."""

    def judge(self, member: tarfile.TarInfo) -> Verdict | None:
        """None if `member` may be extracted (and it is recorded), else why not."""
        check_cancelled(self.cancelled)
        self.members += 1
        if self.members > MAX_MEMBERS:
            return Verdict(None, TOO_MANY_MEMBERS)
        if header_bytes(member) > MAX_HEADER_BYTES:
            return Verdict(None, HEADER_TOO_LARGE)
        return self._judge(member)

    def finish(self) -> Verdict | None:
        """Why the archive as a whole is refused once every member was judged, if it is.

        Judges every symbolic link's target again, now that no later member can change it.
        """
        for node, name in self._links:
            check_cancelled(self.cancelled)
            refusal = _target_refusal(node.parent or self.root, node.target, name)
            if refusal is not None:
                return Verdict(printable(name), refusal)
        check_cancelled(self.cancelled)
        return None if self.root.children else Verdict(None, EMPTY)

    def find(self, path: str) -> Node | None:
        """The entry at `path` (relative to the archive root), not following links."""
        node: Node | None = self.root
        for name in _names(path):
            node = node.children.get(name) if node is not None else None
        return node

    def _judge(self, member: tarfile.TarInfo) -> Verdict | None:
        name = member.name
        shown = printable(name)
        message = _name_refusal(member)
        if message is not None:
            return Verdict(shown, message)
        names = _names(name)
        if not names:
            # './' (from `tar -C dir .`) is the model folder itself, which exists already.
            return None
        parent = self.root
        for index, part in enumerate(names[:-1]):
            child = parent.children.get(part)
            if child is None:
                return self._create(member, parent, names[index:], shown)
            if child.kind is not Kind.FOLDER:
                fix = (
                    "store the files under their real folder"
                    if child.kind is Kind.LINK
                    else REBUILD
                )
                return Verdict(
                    shown,
                    f"member path goes through the {child.kind.value} {child.path()!r}: {fix}",
                )
            parent = child
        existing = parent.children.get(names[-1])
        if existing is None:
            return self._create(member, parent, names[-1:], shown)
        if member.isdir():
            if existing.kind is Kind.FOLDER:
                return None
            return Verdict(
                shown, f"folder {shown!r} replaces a file or link of the same name: remove one"
            )
        if existing.kind is Kind.FOLDER:
            return Verdict(
                shown, f"member replaces the folder {shown!r} of the same name: remove one of them"
            )
        return Verdict(shown, "member appears twice in the archive: keep one of them")

    def _create(
        self, member: tarfile.TarInfo, parent: Node, names: list[str], shown: str
    ) -> Verdict | None:
        """Adds `names` under `parent` (folders, then the member itself) if the member passes."""
        if member.issym():
            message = _target_refusal(parent, member.linkname, member.name, names[:-1])
        elif member.islnk():
            message = self._hardlink_refusal(member)
        else:
            message = None
        if message is not None:
            return Verdict(shown, message)
        data = member.size if member.isreg() else 0
        self.entries += len(names)
        self.expanded += data + len(names) * ENTRY_BYTES
        if self.entries > MAX_MEMBERS:
            return Verdict(None, TOO_MANY_MEMBERS)
        if self.expanded > self.limit.max_bytes:
            return Verdict(None, self.limit.refusal())
        for name in names[:-1]:
            parent.children[name] = parent = Node(Kind.FOLDER, name, parent)
        kind = Kind.FOLDER if member.isdir() else Kind.LINK if member.issym() else Kind.FILE
        node = Node(kind, names[-1], parent, member.linkname if member.issym() else "")
        parent.children[names[-1]] = node
        if kind is Kind.LINK:
            self._links.append((node, member.name))
        return None

    def _hardlink_refusal(self, member: tarfile.TarInfo) -> str | None:
        target = member.linkname
        names = _names(target)
        if target.startswith("/") or ".." in names:
            return (
                f"hard link points outside the archive ({printable(member.name)} is a link to "
                f"{printable(target)}): name its target by its path in the archive"
            )
        node = self.find(target) if names and len(names) <= MAX_DEPTH else None
        # 'file/' or 'file/.' names no file for os.link, and tarfile then seeks back for it.
        not_a_file_name = target.rpartition("/")[2] in ("", ".")
        if node is None or node.kind is not Kind.FILE or not_a_file_name or _too_long(target):
            return (
                f"hard link to {printable(target)!r}, which is not a file earlier in the "
                "archive: store the file itself or put its target before it"
            )
        return None


def _too_long(path: str) -> bool:
    return "\0" in path or len(os.fsencode(path)) > MAX_PATH_BYTES


def _name_refusal(member: tarfile.TarInfo) -> str | None:
    """What is wrong with the member's name or type on its own, if anything."""
    name = member.name
    if "\0" in name:
        return "member path contains a NUL byte: no file system can create it; " + REBUILD
    if name.startswith("/"):
        return (
            f"absolute member path ({printable(name)!r} is an absolute path): store paths "
            "relative to the archive root"
        )
    if "\\" in name:
        return (
            "member path contains a backslash (a Windows separator): rebuild it with `tar` "
            "on Linux or macOS, which separates folders with '/'"
        )
    names = _names(name)
    # A character is at most 4 bytes: only names that could be too long are encoded.
    if len(os.fsencode(name)) > MAX_PATH_BYTES or any(
        len(part) > MAX_NAME_BYTES // 4 and len(os.fsencode(part)) > MAX_NAME_BYTES
        for part in names
    ):
        return (
            f"member path is too long (over {MAX_PATH_BYTES} bytes, or a name over "
            f"{MAX_NAME_BYTES}): a model folder needs no such path; use shorter names"
        )
    if len(names) > MAX_DEPTH:
        return (
            f"member path is deeper than {MAX_DEPTH} folders: a model folder needs no such "
            "depth; flatten it"
        )
    if ".." in names:
        return f"member path escapes the model folder ('..'): {REBUILD} from the model's parent"
    if member.ischr() or member.isblk() or member.isfifo():
        return (
            "device or FIFO member: an archive may hold only files, folders and links; "
            "remove this device, FIFO or other special file"
        )
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return f"unsupported member type {member.type!r}: keep only files, folders and links"
    if member.sparse is not None:
        return "sparse file member: rebuild the archive without `--sparse`"
    if not (isinstance(member.mtime, (int, float)) and abs(member.mtime) < _MAX_MTIME):
        # Not a number os.utime takes (inf, NaN, past time_t): tarfile would fail with a 500.
        return f"member has an impossible modification time ({member.mtime!r}): {REBUILD}"
    if not member.isdir() and name.rstrip("/").rpartition("/")[2] in ("", "."):
        # tarfile would open the folder itself ('m/.') as the file to write.
        return f"member has an empty name or '.' as its name: {REBUILD}"
    return None


def _target_refusal(
    folder: Node, target: str, name: str, pending: list[str] | None = None
) -> str | None:
    """Why a symbolic link in `folder` may not point at `target`, if it may not.

    `pending` names folders below `folder` that the link's own path creates (not yet in the
    tree). A target is some '..' then names, as `ln -s ../1/model.pt` writes it: it may not
    rise above the model folder, and none of its names may be a symbolic link, neither one
    it passes through (what that link points at could change where the rest leads) nor the
    last (no chains: each link resolves in one step, and resolving all of them is linear).
    A name missing from the tree, or a file, ends the walk: the kernel would stop there.
    """
    if not target:
        return "symbolic link has an empty target: store the file itself"
    outside = (
        f"symbolic link points outside the archive ({printable(name)} is a link to "
        f"{printable(target)}): store the file itself"
    )
    if target.startswith("/"):
        return outside
    if _too_long(target):
        return (
            f"symbolic link target is longer than {MAX_PATH_BYTES} bytes or holds a NUL byte: "
            "a model folder needs no such link; store the file itself"
        )
    names = _names(target)
    ups = 0
    while ups < len(names) and names[ups] == "..":
        ups += 1
    rest = names[ups:]
    if ".." in rest:
        return (
            f"symbolic link target has '..' after a folder name ({printable(target)}): point "
            "it straight at the file, like '../1/model.pt'"
        )
    if len(rest) > MAX_DEPTH:
        return f"symbolic link target is deeper than {MAX_DEPTH} folders: store the file itself"
    node = folder
    below = len(pending or ())
    """How many of the link's own folders are not in the tree yet."""
    for _ in range(ups):
        if below:
            below -= 1
        elif node.parent is None:
            return outside
        else:
            node = node.parent
    if below:
        return None  # the target starts in a folder only this link creates: nothing there yet
    for part in rest:
        child = node.children.get(part)
        if child is None or child.kind is Kind.FILE:
            return None
        if child.kind is Kind.LINK:
            return (
                f"symbolic link's target passes through or is another symbolic link "
                f"({child.path()!r}): point it at the real path"
            )
        node = child
    return None
