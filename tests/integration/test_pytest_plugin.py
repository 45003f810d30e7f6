"""The `mme_endpoint` fixture, used the way a project testing its own models would use it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mme_local.artifacts.package import build_bert_torchscript_folder, make_archive, tiny_bert
from mme_local.pytest_plugin import MmeEndpoint

pytestmark = pytest.mark.integration


def _embed(mme_endpoint: MmeEndpoint, target_model: str) -> np.ndarray:
    ids = [[2, 7, 11, 3]]
    payload = {
        "inputs": [
            {"name": "INPUT__0", "shape": [1, 4], "datatype": "INT32", "data": ids},
            {"name": "INPUT__1", "shape": [1, 4], "datatype": "INT32", "data": [[1, 1, 1, 1]]},
        ]
    }
    response = mme_endpoint.client.invoke_endpoint(
        EndpointName=mme_endpoint.endpoint_name,
        TargetModel=target_model,
        ContentType="application/json",
        Body=json.dumps(payload),
    )
    outputs = {o["name"]: o for o in json.loads(response["Body"].read())["outputs"]}
    pooled = outputs["OUTPUT__1"]
    return np.asarray(pooled["data"], dtype=np.float32).reshape(pooled["shape"])


def test_two_models_on_one_endpoint(mme_endpoint: MmeEndpoint) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        targets = []
        for seed in (0, 1):
            folder = build_bert_torchscript_folder(Path(scratch) / f"m{seed}", tiny_bert(seed))
            archive = make_archive(folder, Path(scratch) / f"tiny-{seed}.tar.gz")
            targets.append(mme_endpoint.add_model(archive))
        renamed = mme_endpoint.add_model(archive, target_model="team-a/tiny-again.tar.gz")

    assert targets == ["tiny-0.tar.gz", "tiny-1.tar.gz"]
    assert mme_endpoint.url.startswith("http://127.0.0.1:")
    first, second = (_embed(mme_endpoint, target) for target in targets)
    assert first.shape == second.shape == (1, 32)
    assert not np.allclose(first, second)  # two different models answered
    np.testing.assert_allclose(_embed(mme_endpoint, renamed), second, atol=1e-6)
