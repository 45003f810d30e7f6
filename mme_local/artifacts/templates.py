"""The model folder templates under `model_repo_templates/` (Triton's, and TorchServe's
archive layout), and filling them in."""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TEMPLATES_ENV = "MME_LOCAL_TEMPLATES"

InstanceKind = Literal["auto", "gpu", "cpu"]


class TemplateError(ValueError):
    """A template that does not exist or cannot be filled in."""


@dataclass(frozen=True)
class Template:
    name: str
    model_name: str
    """The model folder's name inside the archive (SageMaker loads it under the TargetModel)."""
    traced: bool
    """True: the version folder gets a TorchScript model.pt; False: the Hugging Face files."""
    stack: str = "triton"
    """The serving stack whose layout the template writes ("triton" or "torchserve")."""
    marker: str = "config.pbtxt"
    """A file every copy of the template folder has (to tell a broken install apart)."""


TEMPLATES: dict[str, Template] = {
    "bert-torchscript": Template("bert-torchscript", "bert", traced=True),
    "bert-text": Template("bert-text", "bert_text", traced=False),
    "bert-torchserve": Template(
        "bert-torchserve", "bert", traced=True, stack="torchserve", marker="handler.py"
    ),
}


DEFAULT_TEMPLATE = {"triton": "bert-torchscript", "torchserve": "bert-torchserve"}
"""The BERT template each stack serves by default (the demo's, the benchmark's)."""


def templates_root() -> Path:
    """$MME_LOCAL_TEMPLATES, else the templates installed with the package.

    In a source checkout `mme_local/model_repo_templates` is a link to the repository's
    top-level folder, and the wheel carries a copy at the same place; a checkout whose link was
    not made (git's `core.symlinks=false`) still finds the top-level folder.
    """
    explicit = os.environ.get(TEMPLATES_ENV)
    if explicit:
        return Path(explicit)
    package = Path(__file__).resolve().parents[1]
    installed = package / "model_repo_templates"
    if installed.is_dir():
        return installed
    return package.parent / "model_repo_templates"


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(TEMPLATES))
        raise TemplateError(f"unknown template {name!r} (known: {known})") from None


def template_dir(name: str, root: Path | None = None) -> Path:
    template = get_template(name)
    folder = (root or templates_root()) / template.name
    if not (folder / template.marker).is_file():
        raise TemplateError(
            f"template folder {folder} has no {template.marker}: reinstall mme-local, or set "
            f"${TEMPLATES_ENV} to a copy of the repository's model_repo_templates/"
        )
    return folder


def instance_group(kind: InstanceKind) -> str:
    """The config's instance_group block.

    "auto" writes none: Triton then puts one instance on each GPU it sees, or on the CPU when
    there is none, so one artifact suits a laptop and a GPU endpoint alike.
    """
    if kind == "auto":
        return "# no instance_group: one instance per visible GPU, else one on the CPU"
    return f"instance_group [\n  {{\n    count: 1\n    kind: KIND_{kind.upper()}\n  }}\n]"


def render_config(folder: Path, values: dict[str, str | int]) -> str:
    text = (folder / "config.pbtxt").read_text(encoding="utf-8")
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as error:
        raise TemplateError(f"{folder / 'config.pbtxt'}: cannot fill in {error}") from error
