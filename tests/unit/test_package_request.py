"""The request.json `package` writes: a body the packaged model accepts."""

from __future__ import annotations

import json
from pathlib import Path

from mme_local.cli.package_request import SENTENCE, request_for, write_request
from mme_local.demo.config import minilm_folder


def test_a_torchscript_request_is_tokenized_with_the_folders_tokenizer() -> None:
    body = request_for("bert-torchscript", minilm_folder())
    ids, mask = body["inputs"]
    assert [ids["name"], mask["name"]] == ["INPUT__0", "INPUT__1"]
    assert ids["datatype"] == mask["datatype"] == "INT32"
    assert ids["data"][0] == 101 and ids["data"][-1] == 102  # [CLS] ... [SEP]
    assert ids["shape"] == mask["shape"] == [1, len(ids["data"])]
    assert set(mask["data"]) == {1}


def test_a_folder_without_a_tokenizer_gets_cls_and_sep(tmp_path: Path) -> None:
    ids, mask = request_for("bert-torchscript", tmp_path)["inputs"]
    assert ids["data"] == [101, 102] and mask["data"] == [1, 1] and ids["shape"] == [1, 2]


def test_a_text_request_sends_the_sentence() -> None:
    body = request_for("bert-text", Path("unused"))
    assert body == {
        "inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [SENTENCE]}]
    }


def test_the_written_file_is_json_and_its_inputs_are_named(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    line = write_request(path, request_for("bert-torchscript", tmp_path))
    assert json.loads(path.read_text())["inputs"][0]["name"] == "INPUT__0"
    assert line == f"{path}: INPUT__0 INT32 [1, 2], INPUT__1 INT32 [1, 2]"
