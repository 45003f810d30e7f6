"""Sentences to the artifact's INT32 inputs, and its answer back to a sentence embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt


class Encoder:
    """Tokenises with the model folder's own `tokenizer.json`, without padding."""

    def __init__(self, model_folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
        self.tokenizer.no_padding()

    def body(self, sentence: str) -> tuple[bytes, list[int]]:
        """The KServe v2 JSON request, and the attention mask that pooling needs later."""
        encoding = self.tokenizer.encode(sentence)
        ids, mask = list(encoding.ids), list(encoding.attention_mask)
        shape = [1, len(ids)]
        payload = {
            "inputs": [
                {"name": "INPUT__0", "shape": shape, "datatype": "INT32", "data": ids},
                {"name": "INPUT__1", "shape": shape, "datatype": "INT32", "data": mask},
            ]
        }
        return json.dumps(payload).encode(), mask

    @staticmethod
    def sentence_embedding(answer: bytes, mask: list[int]) -> npt.NDArray[np.float32]:
        """Mean of the token vectors (OUTPUT__0) over the real tokens, as sentence-transformers."""
        outputs = {o["name"]: o for o in json.loads(answer)["outputs"]}
        hidden = outputs["OUTPUT__0"]
        tokens = np.asarray(hidden["data"], dtype=np.float32).reshape(hidden["shape"])[0]
        weights = np.asarray(mask, dtype=np.float32)[:, None]
        pooled: npt.NDArray[np.float32] = (tokens * weights).sum(axis=0) / max(
            float(weights.sum()), 1e-9
        )
        return pooled


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
