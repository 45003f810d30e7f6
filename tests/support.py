"""Small artifacts built on the fly for tests: no hub, no files checked in."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch

TINY_BERT_CONFIG = """\
name: "bert"
platform: "pytorch_libtorch"
max_batch_size: 0
input [
  { name: "INPUT__0" data_type: TYPE_INT32 dims: [ -1, -1 ] },
  { name: "INPUT__1" data_type: TYPE_INT32 dims: [ -1, -1 ] }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1, -1, 32 ] },
  { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ -1, 32 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

DOUBLER_CONFIG = """\
backend: "python"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

DOUBLER_MODEL = """\
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


FACTOR = {factor}
LOAD_DELAY_S = {load_delay_s}
HOLD_BYTES = {hold_bytes}


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(LOAD_DELAY_S)
        # written, so resident: a model this much bigger than the server's own noise
        self.ballast = np.ones(HOLD_BYTES // 8)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            if x.size and x[0] < 0:
                time.sleep(float(-x[0]))  # a negative first value asks for a slow answer
            y = pb_utils.Tensor("y", (x * FACTOR).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
"""


def tiny_bert_script(seed: int = 0) -> torch.jit.ScriptModule:
    """A small random BERT traced the way `mme-local package` traces (hidden 32, vocab 100)."""
    from mme_local.artifacts.package import tiny_bert
    from mme_local.artifacts.trace import BertOutputs

    model = BertOutputs(tiny_bert(seed, hidden=32, layers=2, vocab_size=100)).eval()
    ids = torch.randint(0, 100, (1, 8), dtype=torch.int32)
    mask = torch.ones(1, 8, dtype=torch.int32)
    with torch.no_grad():
        script: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
            model, (ids, mask), strict=False
        )
    return script


def write_tiny_bert_folder(dest: Path, seed: int = 0) -> torch.jit.ScriptModule:
    """A Triton model folder `dest` (config.pbtxt + 1/model.pt); returns the traced module."""
    (dest / "1").mkdir(parents=True, exist_ok=True)
    script = tiny_bert_script(seed)
    script.save(str(dest / "1" / "model.pt"))
    (dest / "config.pbtxt").write_text(TINY_BERT_CONFIG)
    return script


def write_doubler_folder(
    dest: Path, factor: float = 2.0, load_delay_s: float = 0.0, hold_bytes: int = 0
) -> None:
    """A Python-backend model: y = x * factor; a negative x[0] sleeps -x[0] seconds first.
    It holds `hold_bytes` of memory once loaded."""
    (dest / "1").mkdir(parents=True, exist_ok=True)
    model = DOUBLER_MODEL.format(factor=factor, load_delay_s=load_delay_s, hold_bytes=hold_bytes)
    (dest / "1" / "model.py").write_text(model)
    (dest / "config.pbtxt").write_text(DOUBLER_CONFIG)


def doubler_archive(
    directory: Path, name: str, factor: float = 2.0, load_delay_s: float = 0.0, hold_bytes: int = 0
) -> Path:
    folder = directory / f"{name}-folder" / "doubler"
    write_doubler_folder(folder, factor, load_delay_s, hold_bytes)
    return tar_gz(folder, directory / name)


def kserve_body(values: list[float]) -> bytes:
    tensor = {"name": "x", "shape": [len(values)], "datatype": "FP32", "data": values}
    return json.dumps({"inputs": [tensor]}).encode()


def kserve_output(body: bytes) -> list[float]:
    return [float(v) for v in json.loads(body)["outputs"][0]["data"]]


def tar_gz(folder: Path, archive: Path, arcname: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname or folder.name)
    return archive


def tar_gz_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz of regular files `members` plus symlinks `links` (name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()
