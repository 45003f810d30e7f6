"""Lint for TorchServe archives, and telling a TorchServe archive from a Triton one.

A TorchServe model on a SageMaker MME is the folder `torch-model-archiver --archive-format tgz`
writes, tarred: `<name>/MAR-INF/MANIFEST.json`, the handler it names, the serialized weights
and optionally `model-config.yaml`. TorchServe loads a folder holding a single subfolder as
that subfolder, so the files may also sit at the archive's root.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Collection, Mapping
from typing import Any

MANIFEST = "MAR-INF/MANIFEST.json"
MODEL_CONFIG = "model-config.yaml"
REQUIREMENTS = "requirements.txt"
TRITON_CONFIG = "config.pbtxt"

# What TorchServe 0.12 reads from model-config.yaml (ModelConfig.build); anything else is
# handler-defined, which is allowed but usually a typo at the top level.
MODEL_CONFIG_KEYS = frozenset(
    {
        "minWorkers",
        "maxWorkers",
        "batchSize",
        "maxBatchDelay",
        "responseTimeout",
        "startupTimeout",
        "deviceType",
        "parallelType",
        "parallelLevel",
        "deviceIds",
        "torchrun",
        "pt2",
        "handler",
        "jobQueueSize",
        "useJobTicket",
        "maxRetryTimeoutInSec",
        "clientTimeoutInMills",
        "continuousBatching",
        "sequenceMaxIdleMSec",
        "sequenceTimeoutMSec",
        "maxSequenceJobQueueSize",
        "maxNumSequence",
        "useVenv",
        "stateful",
        "sequenceBatching",
        "asyncCommunication",
    }
)
_INTEGER_KEYS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")

# How each stack's archive is recognised, and how to get one for the other stack.
_LAYOUT = {
    "triton": ("a Triton archive (config.pbtxt)", "-t bert-torchscript"),
    "torchserve": ("a TorchServe archive (MAR-INF/MANIFEST.json)", "-t bert-torchserve"),
}
_TITLE = {"triton": "Triton", "torchserve": "TorchServe"}

Report = Callable[[str | None, str], None]
"""(member, message): records one problem."""


def is_torchserve_member(name: str) -> bool:
    """Whether a member's contents matter to the TorchServe checks (read while scanning)."""
    return name.endswith(MANIFEST) or posixpath.basename(name) == MODEL_CONFIG


def archive_stack(files: Collection[str]) -> str | None:
    """ "torchserve" for a TorchServe layout, "triton" for a Triton one, None if neither."""
    if any(name == MANIFEST or name.endswith("/" + MANIFEST) for name in files):
        return "torchserve"
    if any(posixpath.basename(name) == TRITON_CONFIG for name in files):
        return "triton"
    return None


def wrong_stack(found: str, endpoint: str) -> str:
    """The one line for an archive of one stack on an endpoint of the other."""
    what, _ = _LAYOUT[found]
    _, template = _LAYOUT[endpoint]
    return (
        f"{what} on a {_TITLE[endpoint]} endpoint: serve it with --stack {found}, "
        f"or package it with {template}"
    )


def model_root(files: Collection[str]) -> str:
    """The folder holding MAR-INF/ ("" for the archive root)."""
    roots = sorted(name[: -len(MANIFEST)].rstrip("/") for name in files if name.endswith(MANIFEST))
    return roots[0] if roots else ""


def check_torchserve(files: Collection[str], texts: Mapping[str, bytes], error: Report,
                     warning: Report) -> None:  # fmt: skip
    """The layout checks; `texts` holds the bytes of the members is_torchserve_member named."""
    manifests = sorted(name for name in files if name.endswith(MANIFEST))
    if len(manifests) > 1:
        error(None, f"{len(manifests)} MAR-INF/MANIFEST.json files: package one model per archive")
        return
    root = model_root(files)
    top = {name.split("/", 1)[0] for name in files}
    if root and len(top) > 1:
        for name in sorted(top - {root}):
            warning(name, f"beside the model folder '{root}/': TorchServe then loads the "
                    "archive root, not the model; remove it")  # fmt: skip
    manifest_path = posixpath.join(root, MANIFEST)
    manifest = _manifest(texts.get(manifest_path, b""), manifest_path, error)
    if manifest is None:
        return
    described = manifest.get("model")
    model: dict[str, Any] = described if isinstance(described, dict) else {}
    handler = str(model.get("handler") or "")
    if not handler:
        error(manifest_path, "the manifest names no handler: rebuild with --handler")
    elif handler.endswith(".py") and posixpath.join(root, handler) not in files:
        error(manifest_path, f"handler {handler} is not in the archive: add it beside MAR-INF/")
    serialized = str(model.get("serializedFile") or "")
    if serialized and posixpath.join(root, serialized) not in files:
        error(manifest_path, f"serializedFile {serialized} is not in the archive: add it")
    config_name = str(model.get("configFile") or "")
    config_path = posixpath.join(root, config_name or MODEL_CONFIG)
    if config_name and config_path not in files:
        error(manifest_path, f"configFile {config_name} is not in the archive: add it")
    elif config_path in texts:
        _check_model_config(texts[config_path], config_path, error, warning)
    requirements = posixpath.join(root, REQUIREMENTS)
    if requirements in files:
        warning(requirements, "TorchServe pip-installs it at load only with "
                "install_py_dep_per_model, which needs a network (mme-local turns it off): "
                "bake the packages into the image or vendor them")  # fmt: skip


def _manifest(text: bytes, path: str, error: Report) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError as failure:
        error(path, f"the manifest is not JSON ({failure}): rebuild with torch-model-archiver")
        return None
    if not isinstance(parsed, dict):
        error(path, "the manifest is not a JSON object: rebuild with torch-model-archiver")
        return None
    return parsed


def _check_model_config(text: bytes, path: str, error: Report, warning: Report) -> None:
    import yaml

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as failure:
        error(path, f"model-config.yaml does not parse ({failure}): fix the YAML")
        return
    if config is None:
        return
    if not isinstance(config, dict):
        error(path, "model-config.yaml is not a mapping of keys: fix the YAML")
        return
    for key in sorted(str(k) for k in config if str(k) not in MODEL_CONFIG_KEYS):
        warning(path, f"unknown key {key!r}: TorchServe ignores it unless the handler reads it")
    for key in _INTEGER_KEYS:
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            error(path, f"{key} must be an integer, not {value!r}")
    low, high = config.get("minWorkers"), config.get("maxWorkers")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        error(path, f"minWorkers {low} is above maxWorkers {high}: make minWorkers <= maxWorkers")
