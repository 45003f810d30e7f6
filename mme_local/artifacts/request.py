"""`request.json`: a body the packaged model answers, written next to the archives.

Every template takes KServe v2 JSON (named, shaped, flat tensors): the Triton templates because
Triton's SageMaker front end does, the TorchServe template because its handler was written to,
so one body works on either stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLE_SENTENCE = "A man is playing a guitar."
REQUEST_FILE = "request.json"


def _token_ids(model_folder: Path) -> tuple[list[int], list[int]]:
    """The example sentence through the folder's own tokenizer; without one (a bare config,
    as in tests), a few ids every vocabulary has."""
    tokenizer_file = model_folder / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_padding()
        encoding = tokenizer.encode(EXAMPLE_SENTENCE)
        return list(encoding.ids), list(encoding.attention_mask)
    try:
        config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
        vocab_size = int(config.get("vocab_size", 100))
    except (OSError, ValueError, TypeError):
        vocab_size = 100
    ids = [i % max(vocab_size, 2) for i in range(1, 9)]
    return ids, [1] * len(ids)


def request_body(template: str, model_folder: Path) -> dict[str, Any]:
    """The example request for an archive built by `template` from `model_folder`."""
    if template == "bert-text":
        return {
            "inputs": [
                {"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_SENTENCE]}
            ]
        }
    ids, mask = _token_ids(model_folder)
    shape = [1, len(ids)]
    return {
        "inputs": [
            {"name": "INPUT__0", "shape": shape, "datatype": "INT32", "data": ids},
            {"name": "INPUT__1", "shape": shape, "datatype": "INT32", "data": mask},
        ]
    }


def write_request(template: str, model_folder: Path, out_dir: Path) -> Path:
    path = out_dir / REQUEST_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(request_body(template, model_folder)) + "\n", encoding="utf-8")
    return path
