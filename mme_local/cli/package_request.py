"""The `request.json` that `mme-local package` writes beside the archives it builds.

A KServe v2 JSON body the packaged model accepts, so `invoke --body @request.json`, the `up`
banner's snippet and the README's examples work on the first try. Tokenized with the model
folder's own tokenizer where it has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SENTENCE = "A man is playing a guitar."
# [CLS] and [SEP] in BERT's vocabulary, for a folder without a tokenizer.json.
_FALLBACK_IDS = [101, 102]


def _token_ids(model_folder: Path) -> tuple[list[int], list[int]]:
    tokenizer_file = model_folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return list(_FALLBACK_IDS), [1] * len(_FALLBACK_IDS)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encoded = tokenizer.encode(SENTENCE)
    return list(encoded.ids), list(encoded.attention_mask)


def request_for(template: str, model_folder: Path) -> dict[str, Any]:
    """The request body for a model packaged from `model_folder` with `template`."""
    if template == "bert-text":
        return {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [SENTENCE]}]}
    ids, mask = _token_ids(model_folder)
    shape = [1, len(ids)]
    return {
        "inputs": [
            {"name": "INPUT__0", "shape": shape, "datatype": "INT32", "data": ids},
            {"name": "INPUT__1", "shape": shape, "datatype": "INT32", "data": mask},
        ]
    }


def write_request(path: Path, body: dict[str, Any]) -> str:
    """Write `body` to `path`; returns one line naming its inputs."""
    path.write_text(json.dumps(body) + "\n", encoding="utf-8")
    inputs = ", ".join(
        f"{tensor['name']} {tensor['datatype']} {tensor['shape']}" for tensor in body["inputs"]
    )
    return f"{path}: {inputs}"
