"""Build a model folder (Triton's, or TorchServe's archive layout) from a local Hugging Face
model and a template, then archive it.

torch and transformers are imported only where a model is traced or built, so `mme-local
package` stays quick to start and a traced model never stays in the caller's memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mme_local.artifacts.archive import (
    DEFAULT_COPY_PATTERN,
    copy_names,
    make_archive,
    write_copies,
)
from mme_local.artifacts.templates import (
    InstanceKind,
    get_template,
    instance_group,
    render_config,
    template_dir,
)
from mme_local.files import file_sha256

if TYPE_CHECKING:
    import torch

__all__ = [
    "PackageError",
    "PackageResult",
    "build_bert_text_folder",
    "build_bert_torchscript_folder",
    "build_bert_torchserve_folder",
    "build_model_folder",
    "make_archive",
    "package",
    "tiny_bert",
]

# Environment for anything that loads a model: never reach for a hub, keep the output quiet.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}
_SKIPPED_FILES = {"README.md", ".gitattributes"}


class PackageError(RuntimeError):
    """A model folder that cannot be packaged; the message says why."""


@dataclass(frozen=True)
class PackageResult:
    archives: list[Path]
    """One path per copy, in copy order; the copies have identical bytes."""
    sha256: str
    size_bytes: int


def hidden_size(model_folder: Path) -> int:
    try:
        config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PackageError(
            f"{model_folder} is not a Hugging Face BERT folder (config.json with hidden_size): "
            f"{error}"
        ) from error


def _trace_in_subprocess(model_folder: Path, out_path: Path) -> None:
    command = [sys.executable, "-m", "mme_local.artifacts.trace", str(model_folder), str(out_path)]
    result = subprocess.run(
        command, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise PackageError(f"tracing {model_folder} failed:\n{tail}")


def _write_config(folder: Path, template: str, values: dict[str, str | int]) -> None:
    text = render_config(template_dir(template), values)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")


def build_bert_torchscript_folder(
    dest: Path,
    model: Path | torch.nn.Module,
    max_batch_size: int = 8,
    instance_kind: InstanceKind = "auto",
    max_queue_delay_us: int = 100,
) -> Path:
    """Write `dest/bert/{config.pbtxt, 1/model.pt}` and return `dest/bert`.

    `model` is a local Hugging Face folder (traced in a fresh process, so the bytes are the same
    every time) or a model object already in memory (traced here, for tests).
    """
    spec = get_template("bert-torchscript")
    folder = dest / spec.model_name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Path):
        size = hidden_size(model)
        _trace_in_subprocess(model, version / "model.pt")
    else:
        from mme_local.artifacts.trace import save_traced

        size = int(cast(Any, model).config.hidden_size)
        save_traced(model, version / "model.pt")
    values: dict[str, str | int] = {
        "name": spec.model_name,
        "max_batch_size": max_batch_size,
        "hidden_size": size,
        "max_queue_delay_us": max_queue_delay_us,
        "instance_group": instance_group(instance_kind),
    }
    _write_config(folder, spec.name, values)
    return folder


# What `torch-model-archiver` 0.12.0 writes in MAR-INF/MANIFEST.json, less `createdOn` (a
# clock reading: the archive must come out the same every time; TorchServe does not need it).
ARCHIVER_VERSION = "0.12.0"


def torchserve_manifest(model_name: str) -> dict[str, Any]:
    return {
        "runtime": "python",
        "model": {
            "modelName": model_name,
            "serializedFile": "model.pt",
            "handler": "handler.py",
            "modelVersion": "1.0",
            "configFile": "model-config.yaml",
        },
        "archiverVersion": ARCHIVER_VERSION,
    }


def build_bert_torchserve_folder(dest: Path, model: Path | torch.nn.Module) -> Path:
    """Write `dest/bert/{MAR-INF/MANIFEST.json, handler.py, model.pt, model-config.yaml}`, the
    layout `torch-model-archiver --archive-format tgz --model-name bert` writes, and return
    `dest/bert`. The weights are traced as for bert-torchscript."""
    spec = get_template("bert-torchserve")
    folder = dest / spec.model_name
    (folder / "MAR-INF").mkdir(parents=True, exist_ok=True)
    if isinstance(model, Path):
        hidden_size(model)  # a clear error for a folder that is not a BERT
        _trace_in_subprocess(model, folder / "model.pt")
    else:
        from mme_local.artifacts.trace import save_traced

        save_traced(model, folder / "model.pt")
    source = template_dir(spec.name)
    for name in ("handler.py", "model-config.yaml"):
        shutil.copyfile(source / name, folder / name)
    manifest = json.dumps(torchserve_manifest(spec.model_name), indent=2) + "\n"
    (folder / "MAR-INF" / "MANIFEST.json").write_text(manifest, encoding="utf-8")
    return folder


def build_bert_text_folder(
    dest: Path, model_folder: Path, instance_kind: InstanceKind = "auto"
) -> Path:
    """Write `dest/bert_text/{config.pbtxt, 1/model.py, 1/hf/...}` and return `dest/bert_text`."""
    spec = get_template("bert-text")
    folder = dest / spec.model_name
    version = folder / "1"
    source = template_dir(spec.name)
    size = hidden_size(model_folder)
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "1" / "model.py", version / "model.py")
    _copy_model_files(model_folder, version / "hf")
    values: dict[str, str | int] = {
        "name": spec.model_name,
        "hidden_size": size,
        "instance_group": instance_group(instance_kind),
    }
    _write_config(folder, spec.name, values)
    return folder


def _copy_model_files(source: Path, target: Path) -> None:
    """The files a model and its tokenizer load from; documentation and hidden files stay out."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or path.name in _SKIPPED_FILES:
            continue
        if path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / relative)


def build_model_folder(
    template: str,
    model_folder: Path,
    dest: Path,
    max_batch_size: int = 8,
    instance_kind: InstanceKind = "auto",
) -> Path:
    if not model_folder.is_dir():
        raise PackageError(f"{model_folder} is not a folder")
    if get_template(template).stack == "torchserve":
        return build_bert_torchserve_folder(dest, model_folder)
    if get_template(template).traced:
        return build_bert_torchscript_folder(dest, model_folder, max_batch_size, instance_kind)
    return build_bert_text_folder(dest, model_folder, instance_kind)


def package(
    model_folder: Path,
    out_dir: Path,
    template: str = "bert-torchscript",
    copies: int = 1,
    name_pattern: str = DEFAULT_COPY_PATTERN,
    max_batch_size: int = 8,
    instance_kind: InstanceKind = "auto",
    compresslevel: int = 6,
) -> PackageResult:
    """Build the model folder in a scratch folder and write `copies` identical archives."""
    names = copy_names(name_pattern, copies)
    with tempfile.TemporaryDirectory(prefix="mme-local-package-") as scratch:
        folder = build_model_folder(
            template, model_folder, Path(scratch), max_batch_size, instance_kind
        )
        first = make_archive(folder, out_dir / names[0], compresslevel)
    archives = write_copies(first, out_dir, names)
    return PackageResult(archives, file_sha256(first), first.stat().st_size)


def tiny_bert(seed: int = 0, hidden: int = 32, layers: int = 2, vocab_size: int = 512) -> Any:
    """A small random BertModel (a few hundred KB traced) for tests; `seed` picks its weights."""
    import torch
    from transformers import BertConfig, BertModel

    options: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": hidden * 2,
        "max_position_embeddings": 128,
        "attn_implementation": "eager",
    }
    torch.manual_seed(seed)
    model: Any = BertModel(BertConfig(**options))
    model.eval()
    return model
