"""The real tritonserver binary in SageMaker MME mode, driven through the container API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as triton_http

from mme_local.runtime import provision
from mme_local.runtime.base import TritonSettings
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.embedded import EmbeddedTriton, probe_version
from mme_local.runtime.errors import ModelAlreadyLoaded, ModelNotFound, RuntimeExited
from mme_local.runtime.procs import command_line, processes_in_group
from tests.support import write_doubler_folder, write_tiny_bert_folder

pytestmark = pytest.mark.integration


def _stubs_of(triton: EmbeddedTriton, model_dir: Path) -> list[int]:
    return [
        pid
        for pid in triton.process_ids()
        if any("triton_python_backend_stub" in part for part in command_line(pid))
        and any(str(model_dir) in part for part in command_line(pid))
    ]


@pytest.fixture
async def triton(tmp_path: Path) -> AsyncIterator[EmbeddedTriton]:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(triton: EmbeddedTriton) -> AsyncIterator[ContainerClient]:
    container = ContainerClient(triton.url)
    try:
        yield container
    finally:
        await container.aclose()


def _kserve_json(ids: torch.Tensor, mask: torch.Tensor) -> bytes:
    def tensor(name: str, value: torch.Tensor) -> dict[str, object]:
        return {
            "name": name,
            "shape": list(value.shape),
            "datatype": "INT32",
            "data": value.flatten().tolist(),
        }

    return json.dumps({"inputs": [tensor("INPUT__0", ids), tensor("INPUT__1", mask)]}).encode()


async def test_torchscript_bert_loads_answers_and_unloads(
    triton: EmbeddedTriton, client: ContainerClient, tmp_path: Path
) -> None:
    assert triton.version == provision.PYTRITON_TRITON_VERSION
    model_dir = tmp_path / "cache" / "a1b2c3" / "model"
    script = write_tiny_bert_folder(model_dir / "bert")
    ids = torch.randint(0, 100, (1, 12), dtype=torch.int32)
    mask = torch.ones(1, 12, dtype=torch.int32)
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in script(ids, mask)]

    await client.load("a1b2c3", str(model_dir), "bert.tar.gz")

    # KServe-v2 JSON in, JSON out.
    answer = await client.invoke(
        "a1b2c3", "bert.tar.gz", _kserve_json(ids, mask), "application/octet-stream"
    )
    outputs = {o["name"]: o for o in json.loads(answer.body)["outputs"]}
    for index, want in enumerate(expected):
        got = np.array(outputs[f"OUTPUT__{index}"]["data"], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    # SageMaker's binary+json form, built and read with tritonclient.
    inputs = [
        triton_http.InferInput("INPUT__0", list(ids.shape), "INT32"),
        triton_http.InferInput("INPUT__1", list(mask.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(ids.numpy(), binary_data=True)
    inputs[1].set_data_from_numpy(mask.numpy(), binary_data=True)
    requested = [
        triton_http.InferRequestedOutput(f"OUTPUT__{i}", binary_data=True) for i in range(2)
    ]
    body, header_length = triton_http.InferenceServerClient.generate_request_body(
        inputs, outputs=requested
    )
    content_type = f"application/vnd.sagemaker-triton.binary+json;json-header-size={header_length}"
    answer = await client.invoke("a1b2c3", "bert.tar.gz", body, content_type)
    assert answer.content_type is not None
    assert answer.content_type.startswith("application/vnd.sagemaker-triton.binary+json")
    response_header = int(answer.content_type.split("json-header-size=")[1])
    parsed = triton_http.InferenceServerClient.parse_response_body(
        answer.body, header_length=response_header
    )
    for index, want in enumerate(expected):
        np.testing.assert_allclose(parsed.as_numpy(f"OUTPUT__{index}"), want, rtol=1e-4, atol=1e-5)

    assert _stubs_of(triton, model_dir), "a loaded Python-backend model runs a stub process"
    with pytest.raises(ModelAlreadyLoaded):
        await client.load("a1b2c3", str(model_dir), "bert.tar.gz")

    await client.unload("a1b2c3", "bert.tar.gz")
    deadline = time.monotonic() + 10
    while _stubs_of(triton, model_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stubs_of(triton, model_dir) == []


async def test_unknown_models_answer_404(client: ContainerClient) -> None:
    with pytest.raises(ModelNotFound):
        await client.invoke("nosuch", "nosuch.tar.gz", b"{}", "application/json")
    with pytest.raises(ModelNotFound):
        await client.unload("nosuch", "nosuch.tar.gz")


async def test_python_backend_model(client: ContainerClient, tmp_path: Path) -> None:
    model_dir = tmp_path / "cache" / "d0d0" / "model"
    write_doubler_folder(model_dir / "doubler")
    await client.load("d0d0", str(model_dir), "doubler.tar.gz")
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]}
    ).encode()
    answer = await client.invoke("d0d0", "doubler.tar.gz", body, "application/json")
    assert json.loads(answer.body)["outputs"][0]["data"] == [2.0, 4.0, 7.0]


def _shared_memory() -> set[str]:
    return set(os.listdir("/dev/shm"))


async def test_sigkill_is_reported_and_stop_leaves_no_process(tmp_path: Path) -> None:
    """...nor the stubs' shared-memory regions, which a killed Triton can't remove itself
    (they live in /dev/shm, in RAM, until the machine restarts)."""
    before = _shared_memory()
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    group = server.pid
    assert group is not None
    client = ContainerClient(server.url)
    try:
        model_dir = tmp_path / "cache" / "d1" / "model"
        write_doubler_folder(model_dir / "doubler")
        await client.load("d1", str(model_dir), "doubler.tar.gz")
        bert_dir = tmp_path / "cache" / "b1" / "model"
        write_tiny_bert_folder(bert_dir / "bert")  # a TorchScript model: a thin stub's region
        await client.load("b1", str(bert_dir), "bert.tar.gz")
        assert len(processes_in_group(group)) >= 3, "tritonserver and the models' stubs"
        os.kill(group, signal.SIGKILL)
        deadline = time.monotonic() + 10
        with pytest.raises(RuntimeExited) as raised:
            while time.monotonic() < deadline:
                server.check_alive()
                time.sleep(0.05)
        assert raised.value.returncode == -signal.SIGKILL
        assert "server_version" in raised.value.log_tail or "model" in raised.value.log_tail
        assert "last log lines" in str(raised.value)
    finally:
        await client.aclose()
        await server.stop()
    assert processes_in_group(group) == []
    assert _shared_memory() - before == set(), "shared-memory regions left in /dev/shm"


async def test_an_exit_is_awaited_not_polled(triton: EmbeddedTriton) -> None:
    """`wait_exit` (what the supervisor waits on) returns when the process dies, and only
    then; after a stop there is nothing to wait for."""
    assert triton.pid is not None
    waiting = asyncio.ensure_future(triton.wait_exit())
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not waiting.done(), "returned while tritonserver was running"
    os.kill(triton.pid, signal.SIGKILL)
    await asyncio.wait_for(waiting, 30)
    with pytest.raises(RuntimeExited):
        triton.check_alive()
    await triton.stop()
    await asyncio.wait_for(triton.wait_exit(), 5)


async def test_graceful_stop_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    group = server.pid
    assert group is not None
    client = ContainerClient(server.url)
    model_dir = tmp_path / "cache" / "d2" / "model"
    write_doubler_folder(model_dir / "doubler")
    await client.load("d2", str(model_dir), "doubler.tar.gz")
    await client.aclose()
    await server.stop()
    assert processes_in_group(group) == []


def test_environment_can_hold_a_current_sagemaker_sdk() -> None:
    """mme-local must not pin anything that stops `pip install sagemaker>=3` beside it."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "sagemaker>=3"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_version_is_read_from_the_binary_itself() -> None:
    assert probe_version(provision.ensure()) == provision.PYTRITON_TRITON_VERSION


def test_runtime_info_prints_the_triton_version() -> None:
    from typer.testing import CliRunner

    from mme_local.cli.app import app

    result = CliRunner().invoke(app, ["runtime", "info"])
    assert result.exit_code == 0, result.output
    assert f"Triton version    {provision.PYTRITON_TRITON_VERSION}" in result.output
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]} stub" in result.output
