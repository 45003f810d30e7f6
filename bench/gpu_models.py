"""Model artifacts for the GPU check, made locally with plain torch: no hub, no transformers.

`bert_base` has BERT-base's shapes (12 layers, hidden 768, 12 heads, vocab 30522; ~110 M
parameters, ~440 MB as TorchScript) with random weights, traced to the same interface as AWS's
TorchScript BERT example: `INPUT__0` ids, `INPUT__1` mask → `OUTPUT__0` hidden, `OUTPUT__1` pooled.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int = 30522
    positions: int = 512


BERT_BASE = BertShape(layers=12, hidden=768, heads=12, intermediate=3072)
BERT_TINY = BertShape(layers=2, hidden=128, heads=2, intermediate=512)


class _Encoder(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.words = nn.Embedding(shape.vocab, shape.hidden)
        self.positions = nn.Embedding(shape.positions, shape.hidden)
        self.types = nn.Embedding(2, shape.hidden)
        self.norm = nn.LayerNorm(shape.hidden)
        layer = nn.TransformerEncoderLayer(
            shape.hidden, shape.heads, shape.intermediate, activation="gelu", batch_first=True
        )
        self.layers = nn.TransformerEncoder(layer, shape.layers, enable_nested_tensor=False)
        self.pooler = nn.Linear(shape.hidden, shape.hidden)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.long()
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        hidden = self.norm(
            self.words(ids) + self.positions(positions) + self.types(torch.zeros_like(ids))
        )
        hidden = self.layers(hidden, src_key_padding_mask=attention_mask == 0)
        return hidden, torch.tanh(self.pooler(hidden[:, 0]))


def traced_bert(shape: BertShape, seed: int = 0) -> torch.jit.ScriptModule:
    torch.manual_seed(seed)
    model = _Encoder(shape).eval()
    ids = torch.randint(0, shape.vocab, (1, 16), dtype=torch.int32)
    mask = torch.ones(1, 16, dtype=torch.int32)
    with torch.no_grad():
        script: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
            model, (ids, mask), check_trace=False
        )
    return script


def bert_config(shape: BertShape, kind: str) -> str:
    return f"""\
name: "bert"
platform: "pytorch_libtorch"
max_batch_size: 0
input [
  {{ name: "INPUT__0" data_type: TYPE_INT32 dims: [ -1, -1 ] }},
  {{ name: "INPUT__1" data_type: TYPE_INT32 dims: [ -1, -1 ] }}
]
output [
  {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1, -1, {shape.hidden} ] }},
  {{ name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ -1, {shape.hidden} ] }}
]
instance_group [ {{ kind: {kind} count: 1 }} ]
"""


# Holds `bytes` of GPU memory from load to unload: the way to fill a GPU before a real load.
HOG_CONFIG = """\
backend: "python"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_GPU count: 1 } ]
parameters { key: "bytes" value: { string_value: "%d" } }
"""

HOG_MODEL = """\
import json

import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        size = int(json.loads(args["model_config"])["parameters"]["bytes"]["string_value"])
        self.block = torch.empty(size, dtype=torch.uint8, device="cuda")

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.get_input_tensor_by_name(request, "x")]
            )
            for request in requests
        ]
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def bert_archive(dest: Path, script: torch.jit.ScriptModule, shape: BertShape, kind: str) -> Path:
    """A SageMaker MME artifact (`bert/config.pbtxt`, `bert/1/model.pt`) at `dest`."""
    weights = io.BytesIO()
    torch.jit.save(script, weights)
    # Random weights don't compress: level 1 keeps a 440 MB archive to seconds.
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        _add(tar, "bert/config.pbtxt", bert_config(shape, kind).encode())
        _add(tar, "bert/1/model.pt", weights.getvalue())
    return dest


def hog_archive(dest: Path, size_bytes: int) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        _add(tar, "hog/config.pbtxt", (HOG_CONFIG % size_bytes).encode())
        _add(tar, "hog/1/model.py", HOG_MODEL.encode())
    return dest


def request_body(length: int, vocab: int) -> bytes:
    """A JSON KServe-v2 request for a batch of one sequence of `length` tokens."""
    import json

    ids = [(101 + 7 * i) % vocab for i in range(length)]
    tensors = [
        {"name": "INPUT__0", "shape": [1, length], "datatype": "INT32", "data": ids},
        {"name": "INPUT__1", "shape": [1, length], "datatype": "INT32", "data": [1] * length},
    ]
    return json.dumps({"inputs": tensors}).encode()
