"""Check model.tar.gz artifacts the way SageMaker's Triton (or TorchServe: lint_torchserve.py)
will read them, before any upload.

Each problem is one line that says what is wrong and how to fix it. Errors stop a deploy;
warnings point at things that usually work but often surprise (stray files, unknown backends).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mme_local.artifacts.lint_torchserve import (
    archive_stack,
    check_torchserve,
    is_torchserve_member,
    wrong_stack,
)
from mme_local.artifacts.rules import (
    MAX_ARCHIVE_BYTES,
    REBUILD,
    ArchiveRejected,
    ArchiveRules,
    Kind,
    Node,
    SizeLimit,
    corrupt,
    printable,
)
from mme_local.artifacts.tar_stream import read_members

Severity = Literal["error", "warning"]

# Lint accepts exactly what the emulator agrees to extract.
DEFAULT_MAX_EXPANDED_BYTES: int = MAX_ARCHIVE_BYTES

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_CONFIG_BYTES = 1 << 20
# Configs are held in memory until the layout is checked: many large ones would add up.
_MAX_CONFIGS_BYTES = 16 << 20

# The file each platform or backend loads from a version folder unless default_model_filename
# names another one. Folders count too: model.savedmodel is one, model.onnx may be one.
_MODEL_FILES: dict[str, str] = {
    "pytorch_libtorch": "model.pt",
    "pytorch": "model.pt",
    "onnxruntime_onnx": "model.onnx",
    "onnxruntime": "model.onnx",
    "tensorrt_plan": "model.plan",
    "tensorrt": "model.plan",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
    "tensorflow": "model.savedmodel",
    "python": "model.py",
}
_ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Problem:
    archive: str
    member: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.archive}:{self.member}" if self.member else self.archive
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class _Listing:
    """What an archive would extract to: the rules' own tree of the members they accepted."""

    rules: ArchiveRules
    configs: dict[str, bytes] = field(default_factory=dict)
    """Model folder ("" for the archive root) -> bytes of its config.pbtxt."""
    config_bytes: int = 0
    """Bytes held in `configs` and `texts` together (both are capped as one)."""
    texts: dict[str, bytes] = field(default_factory=dict)
    """Path -> bytes of the small files the TorchServe checks read (manifest, model config)."""

    def files(self) -> set[str]:
        """Every file and link path the archive holds (folders left out)."""
        found: set[str] = set()
        stack: list[tuple[str, Node]] = [("", self.rules.root)]
        while stack:
            prefix, node = stack.pop()
            for name, child in node.children.items():
                path = f"{prefix}{name}"
                if child.kind is Kind.FOLDER:
                    stack.append((path + "/", child))
                else:
                    found.add(path)
        return found

    def children(self, folder: str) -> tuple[list[str], list[str]]:
        """Names of the files and folders directly inside `folder` ("" for the root)."""
        node = self.rules.find(folder)
        if node is None:
            return [], []
        files = sorted(n for n, c in node.children.items() if c.kind is not Kind.FOLDER)
        dirs = sorted(n for n, c in node.children.items() if c.kind is Kind.FOLDER)
        return files, dirs

    def exists(self, path: str) -> bool:
        return self.rules.find(path) is not None


class _Report:
    def __init__(self, archive: Path) -> None:
        self.archive = str(archive)
        self.problems: list[Problem] = []

    def error(self, member: str | None, message: str) -> None:
        self.problems.append(Problem(self.archive, _shown(member), message, "error"))

    def warning(self, member: str | None, message: str) -> None:
        self.problems.append(Problem(self.archive, _shown(member), message, "warning"))


def _shown(member: str | None) -> str | None:
    # Names may hold undecodable bytes or control characters: each problem prints as one line.
    return printable(member) if member is not None else None


def find_archives(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every *.tar.gz directly inside each folder, in a stable order."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.tar.gz")) if path.is_dir() else [path])
    return found


def lint_archive(
    path: Path, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED_BYTES, stack: str | None = None
) -> list[Problem]:
    """Every problem of one archive. `stack` is the endpoint's ("triton", "torchserve"): an
    archive of the other stack is then one error; None checks each archive as what it is."""
    report = _Report(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(2)
    except OSError as error:
        report.error(None, f"cannot read the file ({error.strerror}): check the path")
        return report.problems
    if magic != _GZIP_MAGIC:
        report.error(
            None, f"not a gzip archive: SageMaker expects a gzip-compressed tar; {REBUILD}"
        )
        return report.problems
    listing = _scan(path, max_expanded_bytes, report)
    if listing is not None:
        _check_stack_layout(listing, report, stack)
    return report.problems


def stack_of(path: Path) -> str | None:
    """ "triton" or "torchserve": the layout the archive holds; None for neither, or when the
    archive cannot be read (lint_archive says why)."""
    listing = _scan(path, DEFAULT_MAX_EXPANDED_BYTES, _Report(path))
    return None if listing is None else archive_stack(listing.files())


def check_members(
    path: Path, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED_BYTES
) -> list[Problem]:
    """The member rules' verdicts alone, without the layout checks: the first error is the one
    the emulator's extraction refuses the archive with (a gzip'd tar is assumed)."""
    report = _Report(path)
    _scan(path, max_expanded_bytes, report)
    return report.problems


def _check_stack_layout(listing: _Listing, report: _Report, stack: str | None) -> None:
    files = listing.files()
    found = archive_stack(files)
    if stack is not None and found is not None and found != stack:
        report.error(None, wrong_stack(found, stack))
    elif found == "torchserve":
        check_torchserve(files, listing.texts, report.error, report.warning)
    elif found is None and stack == "torchserve":
        report.error(None, "no MAR-INF/MANIFEST.json: package the model with -t bert-torchserve")
    else:
        _check_layout(listing, report)


def _scan(path: Path, max_expanded_bytes: int, report: _Report) -> _Listing | None:
    rules = ArchiveRules(SizeLimit(max_expanded_bytes))
    listing = _Listing(rules)
    try:
        with path.open("rb") as handle, closing(read_members(handle, rules)) as members:
            for tar, member, verdict in members:
                if verdict is not None:
                    report.error(verdict.member, verdict.message)
                    continue
                names = [part for part in member.name.split("/") if part not in ("", ".")]
                # Only the root's and the top-level folders' configs are models Triton loads.
                if member.isfile() and names[-1:] == ["config.pbtxt"] and len(names) <= 2:
                    _keep_config(listing, tar, member, "/".join(names[:-1]), report)
                elif member.isfile() and is_torchserve_member("/".join(names)):
                    _keep_text(listing, tar, member, "/".join(names), report)
    except ArchiveRejected as error:
        report.error(error.member, error.message)
        return None
    except (OSError, tarfile.TarError) as error:
        # TarError: a config's data ends early inside a well-formed gzip stream.
        report.error(None, corrupt(error))
        return None
    return listing


def _keep_config(
    listing: _Listing, tar: tarfile.TarFile, member: tarfile.TarInfo, folder: str, report: _Report
) -> None:
    text = _kept(listing, tar, member, report)
    if text is not None:
        listing.configs[folder] = text


def _keep_text(
    listing: _Listing, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, report: _Report
) -> None:
    text = _kept(listing, tar, member, report)
    if text is not None:
        listing.texts[path] = text


def _kept(
    listing: _Listing, tar: tarfile.TarFile, member: tarfile.TarInfo, report: _Report
) -> bytes | None:
    """The member's bytes, or None (and an error) once the kept files pass the shared cap."""
    text = _read_member(tar, member)
    listing.config_bytes += len(text)
    if listing.config_bytes > _MAX_CONFIGS_BYTES:
        report.error(
            member.name,
            f"config files add up to more than {_MAX_CONFIGS_BYTES >> 20} MiB: keep a "
            "few models per archive",
        )
        return None
    return text


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read(_MAX_CONFIG_BYTES) if handle is not None else b""


def _parse_config(text: bytes) -> tuple[Any, str | None]:
    """The ModelConfig message, or None and the parser's complaint."""
    # Imported here: the protobuf modules cost start-up time every other command would pay.
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text.decode("utf-8"), model_config_pb2.ModelConfig()), None
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except text_format.ParseError as error:
        return None, str(error)


def _member(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if folder else name


def _check_layout(listing: _Listing, report: _Report) -> None:
    if "" in listing.configs:
        config = _parsed_config(listing, "", report)
        if config is not None:
            _check_model("", config, listing, report, member_of_ensemble=False)
        return
    root_files, root_dirs = listing.children("")
    for name in root_files:
        report.warning(name, "stray file beside the model folder: remove it from the archive")
    junk = [d for d in root_dirs if d.startswith(".") or d == "__MACOSX"]
    for name in junk:
        report.warning(name + "/", "stray folder (OS metadata): remove it from the archive")
    folders = [d for d in root_dirs if d not in junk]
    models = [d for d in folders if d in listing.configs]
    if not models:
        where = f"{folders[0]}/config.pbtxt" if len(folders) == 1 else "<model>/config.pbtxt"
        report.error(None, f"no config.pbtxt: add the model's Triton config as {where}")
        return
    for name in folders:
        if name not in listing.configs:
            report.error(name + "/", "model folder has no config.pbtxt: add one or remove it")
    parsed = {d: c for d in models if (c := _parsed_config(listing, d, report)) is not None}
    if len(models) == 1:
        if models[0] in parsed:
            _check_model(models[0], parsed[models[0]], listing, report, member_of_ensemble=False)
        return
    ensembles = [d for d, c in parsed.items() if c.platform == _ENSEMBLE]
    if not ensembles and len(parsed) == len(models):
        report.error(
            None,
            f"{len(models)} top-level models ({', '.join(models)}) and no ensemble: SageMaker's "
            "Triton loads one model per archive; package each model separately or add an ensemble",
        )
        return
    if len(ensembles) > 1:
        report.error(
            None,
            f"{len(ensembles)} ensembles ({', '.join(ensembles)}): keep exactly one top-level "
            "ensemble per archive",
        )
        return
    for name, config in parsed.items():
        _check_model(name, config, listing, report, member_of_ensemble=name not in ensembles)
    if ensembles:
        _check_ensemble_steps(ensembles[0], parsed[ensembles[0]], models, report)


def _parsed_config(listing: _Listing, folder: str, report: _Report) -> Any:
    config, failure = _parse_config(listing.configs[folder])
    if failure is not None:
        report.error(
            _member(folder, "config.pbtxt"),
            f"config.pbtxt does not parse ({failure}): fix it to Triton's model config format",
        )
    return config


def _check_ensemble_steps(folder: str, config: Any, folders: list[str], report: _Report) -> None:
    used = {str(step.model_name) for step in config.ensemble_scheduling.step}
    for name in sorted(used - set(folders)):
        report.error(
            f"{folder}/config.pbtxt",
            f"ensemble step uses model '{name}', which is not a folder in this archive: add "
            f"'{name}/' or fix model_name",
        )
    for name in folders:
        if name != folder and name not in used:
            report.warning(name + "/", "model folder not used by the ensemble: remove it")


def _check_model(
    folder: str, config: Any, listing: _Listing, report: _Report, member_of_ensemble: bool
) -> None:
    config_path = _member(folder, "config.pbtxt")
    if member_of_ensemble and config.name and config.name != folder:
        report.error(
            config_path,
            f"config name '{config.name}' differs from its folder '{folder}/': an ensemble "
            "member's name must equal its folder name",
        )
    files, dirs = listing.children(folder)
    labels = {str(output.label_filename) for output in config.output if output.label_filename}
    for name in files:
        if name != "config.pbtxt" and name not in labels:
            report.warning(
                _member(folder, name), "stray file in the model folder: remove it from the archive"
            )
    versions = sorted(int(d) for d in dirs if d.isdigit() and int(d) > 0)
    for name in dirs:
        if not (name.isdigit() and int(name) > 0):
            report.warning(
                _member(folder, name) + "/",
                "not a version folder (Triton ignores it): remove it from the archive",
            )
    if not versions:
        report.error(
            _member(folder, "") or None,
            f"no numeric version folder: put the model files under '{_member(folder, '1')}/'",
        )
        return
    for version in _served_versions(config, versions, folder, report):
        _check_model_file(folder, version, config, listing, report)


def _served_versions(config: Any, versions: list[int], folder: str, report: _Report) -> list[int]:
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return versions
    if choice == "specific":
        wanted = sorted(int(v) for v in policy.specific.versions)
        for version in sorted(set(wanted) - set(versions)):
            report.error(
                _member(folder, "config.pbtxt"),
                f"version_policy asks for version {version}, which has no folder: add "
                f"'{_member(folder, str(version))}/' or change version_policy",
            )
        return [v for v in wanted if v in versions]
    count = int(policy.latest.num_versions) if choice == "latest" else 1
    return versions[-max(count, 1) :]


def _check_model_file(
    folder: str, version: int, config: Any, listing: _Listing, report: _Report
) -> None:
    kind = str(config.platform or config.backend)
    version_dir = _member(folder, str(version))
    if kind == _ENSEMBLE:
        return
    if not kind:
        report.warning(
            _member(folder, "config.pbtxt"),
            "config names no platform or backend: Triton guesses from the files; set one",
        )
        return
    filename = str(config.default_model_filename) or _MODEL_FILES.get(kind)
    if filename is None:
        report.warning(
            _member(folder, "config.pbtxt"),
            f"unknown backend '{kind}': check that the SageMaker Triton image ships it and "
            "that the version folder holds the file it loads",
        )
        return
    if not listing.exists(posixpath.join(version_dir, filename)):
        report.error(
            version_dir + "/",
            f"no {filename} for {kind}: add it, or set default_model_filename in config.pbtxt "
            "to the file's name",
        )


def top_level_config(path: Path) -> Any:
    """The ModelConfig Triton loads first from a clean archive (the ensemble if there is one).

    None when the archive has errors; call lint_archive for the reasons.
    """
    report = _Report(path)
    listing = _scan(path, DEFAULT_MAX_EXPANDED_BYTES, report)
    if listing is None:
        return None
    _check_layout(listing, report)
    if any(p.severity == "error" for p in report.problems):
        return None
    configs = [_parse_config(text)[0] for text in listing.configs.values()]
    if len(configs) == 1:
        return configs[0]
    return next(c for c in configs if c.platform == _ENSEMBLE)
