"""The torch host beside a real embedded Triton: thin stubs, memory where it lives, and a
host that dies taking the runtime down and leaves nothing behind on stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mme_local.runtime import provision
from mme_local.runtime.base import TritonSettings
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.runtime.probes import ServerProbes
from mme_local.runtime.procs import command_line, processes_in_group, rss_bytes
from mme_local.runtime.torch_host_process import TorchHostExited
from tests.support import write_tiny_bert_folder

pytestmark = pytest.mark.integration


@pytest.fixture
async def triton(tmp_path: Path) -> AsyncIterator[EmbeddedTriton]:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _body(ids: torch.Tensor, mask: torch.Tensor) -> bytes:
    def tensor(name: str, value: torch.Tensor) -> dict[str, object]:
        return {"name": name, "shape": list(value.shape), "datatype": "INT32",
                "data": value.flatten().tolist()}  # fmt: skip

    return json.dumps({"inputs": [tensor("INPUT__0", ids), tensor("INPUT__1", mask)]}).encode()


def _stubs(triton: EmbeddedTriton) -> list[int]:
    return [
        pid
        for pid in triton.process_ids()
        if any("triton_python_backend_stub" in part for part in command_line(pid))
    ]


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


async def _eventually(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.1)
    assert condition()  # type: ignore[operator]


async def test_models_share_one_torch_process_and_stubs_stay_thin(
    triton: EmbeddedTriton, tmp_path: Path
) -> None:
    client = ContainerClient(triton.url)
    scripts = {}
    try:
        for name, seed in (("aa11", 0), ("bb22", 1)):
            model_dir = tmp_path / "cache" / name / "model"
            scripts[name] = write_tiny_bert_folder(model_dir / "bert", seed=seed)
            await client.load(name, str(model_dir), f"{name}.tar.gz")
        ids = torch.randint(0, 100, (1, 9), dtype=torch.int32)
        mask = torch.ones(1, 9, dtype=torch.int32)
        for name, script in scripts.items():
            with torch.no_grad():
                want = script(ids, mask)[0].numpy()
            answer = await client.invoke(
                name, f"{name}.tar.gz", _body(ids, mask), "application/json"
            )
            out = {o["name"]: o for o in json.loads(answer.body)["outputs"]}["OUTPUT__0"]
            got = np.array(out["data"], dtype=np.float32).reshape(want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

        host_pid = triton.torch_host.pid
        assert host_pid is not None and host_pid in triton.process_ids()
        assert "libtorch" in _maps(host_pid)
        stubs = _stubs(triton)
        assert len(stubs) == 2
        for stub in stubs:
            assert "libtorch" not in _maps(stub), "the stub must not import torch"

        params = sum(p.numel() * p.element_size() for p in scripts["aa11"].parameters())
        hosted = triton.hosted_model_bytes("aa11")
        assert hosted is not None and hosted >= params
        stub_pids = triton.model_process_ids("aa11")
        assert stub_pids and hosted > 1 << 16
        stub_rss = rss_bytes(stub_pids)
        measured = await asyncio.to_thread(ServerProbes(triton).model_memory, "aa11")
        # its thin stub, plus its tensors in the host (the stub's RSS moves a page or two)
        assert measured is not None and measured >= stub_rss + hosted - (1 << 14)

        await client.unload("aa11", "aa11.tar.gz")
        await _eventually(lambda: triton.hosted_model_bytes("aa11") is None)
        assert triton.hosted_model_bytes("bb22") is not None
    finally:
        await client.aclose()


async def test_a_dead_host_is_reported_and_stop_leaves_nothing(tmp_path: Path) -> None:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    host_pid = server.torch_host.pid
    socket_path = server.torch_host.socket_path
    assert host_pid is not None and socket_path is not None
    try:
        await _eventually(lambda: os.path.exists(socket_path))
        assert os.environ.get("MME_LOCAL_TORCH_HOST") is None  # only Triton's environment has it
        assert server.environment()["MME_LOCAL_TORCH_HOST"] == socket_path
        os.kill(host_pid, signal.SIGKILL)
        with pytest.raises(TorchHostExited) as raised:
            for _ in range(200):
                server.check_alive()
                await asyncio.sleep(0.05)
        assert raised.value.returncode == -signal.SIGKILL
        assert "torch host exited" in str(raised.value)
    finally:
        await server.stop()
    assert processes_in_group(host_pid) == []
    assert not os.path.exists(os.path.dirname(socket_path))


async def test_a_restart_brings_a_new_host(tmp_path: Path) -> None:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    await server.start()
    try:
        first = server.torch_host.pid
        await server.stop()
        await server.start()
        assert server.torch_host.pid not in (None, first)
        server.check_alive()
    finally:
        await server.stop()


def test_the_emulator_restarts_a_dead_host_and_measures_models_where_they_live(
    tmp_path: Path,
) -> None:
    from botocore.exceptions import ClientError

    from mme_local.background import run_in_thread
    from mme_local.settings import EmulatorSettings
    from tests.support import tar_gz

    write_tiny_bert_folder(tmp_path / "src" / "bert")
    archive = tar_gz(tmp_path / "src" / "bert", tmp_path / "bert.tar.gz")
    ids = torch.randint(0, 100, (1, 6), dtype=torch.int32)
    body = _body(ids, torch.ones(1, 6, dtype=torch.int32))
    with run_in_thread(EmulatorSettings(port=0, cache_dir=tmp_path / "cache")) as running:
        running.s3_client().upload_file(
            str(archive), running.model_data.bucket, running.model_data.prefix + "bert.tar.gz"
        )
        client = running.runtime_client()

        def invoke() -> None:
            client.invoke_endpoint(
                EndpointName="local-mme", TargetModel="bert.tar.gz", Body=body,
                ContentType="application/json",
            )  # fmt: skip

        invoke()
        server = running.emulator.server
        assert isinstance(server, EmbeddedTriton)
        entry = running.emulator.cache.machine.models.get("bert.tar.gz")
        assert entry is not None and entry.memory_measured
        hosted = server.hosted_model_bytes(entry.name)
        assert hosted is not None and entry.memory_bytes > hosted  # stub RSS + its tensors

        first = server.torch_host.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 90
        answered = False
        while not answered and time.monotonic() < deadline:
            try:
                invoke()
                answered = server.torch_host.pid not in (None, first)
            except ClientError:
                time.sleep(0.2)
        assert answered, "a request is served again by a new torch host"
        assert running.metrics()["mme_runtime_restarts_total"] == 1


def _torch_hosts_below(root: int) -> list[int]:
    from mme_local.runtime.procs import descendants

    return [
        pid
        for pid in descendants(root)
        if "mme_local.runtime.torch_host" in " ".join(command_line(pid))
    ]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
def test_up_leaves_no_torch_host_behind(tmp_path: Path, stop_signal: signal.Signals) -> None:
    """Ctrl-C stops the host with Triton; if `up` itself is killed, the host follows it."""
    import subprocess

    from mme_local.runtime.base import free_port
    from tests.integration.test_cli_up import CLI, _wait_for_ping

    port = free_port()
    process = subprocess.Popen(
        [CLI, "up", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    hosts: list[int] = []
    try:
        _wait_for_ping(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + 30
        while not hosts and time.monotonic() < deadline:
            hosts = _torch_hosts_below(process.pid)
            time.sleep(0.1)
        assert len(hosts) == 1
        folder = Path(command_line(hosts[0])[-1]).parent
        deadline = time.monotonic() + 60
        while not (folder / "host.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # listening: torch imported
        os.kill(process.pid, stop_signal)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + 20
    while Path(f"/proc/{hosts[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    status = Path(f"/proc/{hosts[0]}/stat")
    assert not status.exists() or status.read_text().split(") ")[1].startswith("Z")
    assert not folder.exists(), "the socket's folder is removed"


async def test_a_triton_that_cannot_start_takes_its_host_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedTriton(provision.ensure(), tmp_path / "triton", TritonSettings())
    monkeypatch.setattr(server, "command", lambda port: [str(tmp_path / "no-tritonserver")])
    with pytest.raises(FileNotFoundError):
        await server.start()
    assert server.torch_host.pid is None and server.torch_host.socket_path is None
    assert server.process_ids() == []
