"""Sentence embeddings on Triton's Python backend: strings in, one vector per string out.

The tokenizer and the model load from the `hf/` folder beside this file, never from a hub, so
the artifact works offline. Pooling follows the sentence-transformers files in that folder
(`1_Pooling/config.json`, a Normalize step in `modules.json`); without them it is mean pooling.

The environment running the stub needs torch and transformers: mme-local's own environment
does; in NVIDIA's container, ship one with the artifact (EXECUTION_ENV_PATH, conda-pack).
"""

# ruff: noqa: I001
from __future__ import annotations

import json
import os
from typing import Any

# First: importing it makes the serving environment (torch, numpy) visible to the stub.
import triton_python_backend_utils as pb_utils
import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

MAX_TOKENS = 256


def _read_json(path: str) -> Any:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _pooling(folder: str) -> tuple[str, bool]:
    """("mean" | "cls" | "max", normalize) from the folder's sentence-transformers files."""
    config = _read_json(os.path.join(folder, "1_Pooling", "config.json")) or {}
    mode = "mean"
    if config.get("pooling_mode_cls_token"):
        mode = "cls"
    elif config.get("pooling_mode_max_tokens"):
        mode = "max"
    modules = _read_json(os.path.join(folder, "modules.json")) or []
    normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
    return mode, normalize


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"], "hf")
        wants_gpu = args.get("model_instance_kind") == "GPU"
        if wants_gpu and torch.cuda.is_available():
            self.device = torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
        else:
            self.device = torch.device("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(self.device)
        self.model.eval()
        self.mode, self.normalize = _pooling(folder)

    def _embed(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            pooled = _pool(hidden, batch["attention_mask"], self.mode)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.ascontiguousarray(pooled.float().cpu().numpy())

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
                texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw]
                embedding = pb_utils.Tensor("EMBEDDING", self._embed(texts))
                responses.append(pb_utils.InferenceResponse(output_tensors=[embedding]))
            except Exception as error:  # the text goes back to the caller as a model error
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(error))
                    )
                )
        return responses

    def finalize(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
