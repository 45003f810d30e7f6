"""`mme-local up --stack torchserve` with the real TorchServe 0.12 (a JVM and Python workers):
unchanged boto3 and AWS CLI, eviction under --max-loaded-models 1, a restart after the JVM is
SIGKILLed, and no process left after Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import torch
from botocore.config import Config

from mme_local.artifacts.archive import make_archive, write_copies
from mme_local.artifacts.lint import lint_archive
from mme_local.artifacts.package import build_bert_torchserve_folder, tiny_bert
from mme_local.capacity.profile import load_profile
from mme_local.cli.package_request import request_for
from mme_local.runtime.base import free_port
from mme_local.runtime.procs import command_line, descendants
from tests.support import tar_gz, write_tiny_bert_folder

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "mme-local")
AWS = str(Path(sys.executable).parent / "aws")
ENVIRONMENT = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _jvms(cache_dir: Path) -> list[int]:
    """TorchServe frontends started for this cache folder (their config lives in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            arguments = command_line(int(entry.name))
            if "org.pytorch.serve.ModelServer" in arguments and any(
                str(cache_dir) in argument for argument in arguments
            ):
                found.append(int(entry.name))
    return found


def _listening_addresses(pid: int) -> list[str]:
    """Local addresses (hex, as /proc/net shows them) of the TCP sockets `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1].rsplit(":", 1)[0])
    return found


# 127.0.0.1 as /proc/net/tcp and (IPv4-mapped) /proc/net/tcp6 print it.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}


def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, torch.Tensor]:
    """Two copies of a tiny BERT packaged for TorchServe, a request, the pooled answer."""
    root = tmp_path_factory.mktemp("torchserve-models")
    hf = root / "hf"
    # No tokenizer in the folder: request.json then holds [CLS] and [SEP] (ids 101 and 102).
    tiny_bert(seed=5, hidden=32, layers=2).save_pretrained(hf)
    folder = build_bert_torchserve_folder(root / "build", tiny_bert(seed=5))
    models = root / "models"
    archive = make_archive(folder, root / "bert.tar.gz")
    assert lint_archive(archive, stack="torchserve") == []
    write_copies(archive, models, ["model-0.tar.gz", "model-1.tar.gz"])
    write_tiny_bert_folder(root / "triton" / "bert")
    tar_gz(root / "triton" / "bert", models / "triton.tar.gz")
    body = request_for("bert-torchserve", hf)
    ids = torch.tensor(body["inputs"][0]["data"], dtype=torch.int32).reshape(1, -1)
    traced = torch.jit.load(str(folder / "model.pt"))  # type: ignore[no-untyped-call]
    with torch.no_grad():
        _, pooled = traced(ids, torch.ones_like(ids))
    return models, json.dumps(body).encode(), pooled


@pytest.fixture
def endpoint(
    packaged: tuple[Path, bytes, torch.Tensor], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    models, _, _ = packaged
    cache_dir = tmp_path / "cache"
    port = free_port()
    process = subprocess.Popen(
        [CLI, "up", "--stack", "torchserve", "--port", str(port), "--models", str(models),
         "--max-loaded-models", "1", "--cache-dir", str(cache_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        cwd=tmp_path,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(f"{url}/ping", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait(answers, 120, "mme-local up --stack torchserve")
        yield url, process, cache_dir
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _jvms(cache_dir):
            os.killpg(pid, signal.SIGKILL)


def _pooled(answer: bytes) -> torch.Tensor:
    outputs = {o["name"]: o for o in json.loads(answer)["outputs"]}
    pooled = outputs["OUTPUT__1"]
    return torch.tensor(pooled["data"]).reshape(pooled["shape"])


def test_torchserve_stack_end_to_end(
    packaged: tuple[Path, bytes, torch.Tensor],
    endpoint: tuple[str, subprocess.Popen[str], Path],
    tmp_path: Path,
) -> None:
    _, body, expected = packaged
    url, process, cache_dir = endpoint
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )  # fmt: skip

    # A Triton archive on this endpoint: one line saying so, before TorchServe is asked.
    with pytest.raises(runtime.exceptions.ModelError, match=r"a Triton archive .* on a TorchServe"):
        runtime.invoke_endpoint(
            EndpointName="local-mme", TargetModel="triton.tar.gz",
            ContentType="application/json", Body=body,
        )  # fmt: skip

    # Unchanged boto3.
    answer = runtime.invoke_endpoint(
        EndpointName="local-mme", TargetModel="model-0.tar.gz",
        ContentType="application/json", Body=body,
    )  # fmt: skip
    assert answer["ContentType"] == "application/json"
    assert torch.allclose(_pooled(answer["Body"].read()), expected, atol=1e-5)
    [jvm] = _jvms(cache_dir)
    first_workers = descendants(jvm)
    assert first_workers, "the model runs in a worker process of the JVM"
    # Inference, management, metrics and both gRPC ports: every one on loopback.
    addresses = _listening_addresses(jvm)
    assert len(addresses) >= 4 and set(addresses) <= LOOPBACK, addresses

    # Unchanged AWS CLI, on the other copy: with room for one model, model-0 is evicted.
    request, out = tmp_path / "request.json", tmp_path / "out.json"
    request.write_bytes(body)
    result = subprocess.run(
        [AWS, "sagemaker-runtime", "invoke-endpoint", "--endpoint-url", url,
         "--endpoint-name", "local-mme", "--target-model", "model-1.tar.gz",
         "--content-type", "application/json", "--body", f"fileb://{request}", str(out)],
        capture_output=True, text=True, env=ENVIRONMENT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert torch.allclose(_pooled(out.read_bytes()), expected, atol=1e-5)
    rows = {row["target_model"]: row for row in httpx.get(f"{url}/_mme/models").json()}
    assert rows["model-1.tar.gz"]["state"] == "loaded"
    assert rows["model-0.tar.gz"]["state"] != "loaded"
    assert rows["model-0.tar.gz"]["unloads"] == 1
    # Its memory is its worker's (a Python process with torch), measured from /proc.
    assert rows["model-1.tar.gz"]["memory_bytes"] > 100 * 2**20
    _wait(lambda: not any(_alive(pid) for pid in first_workers), 30, "model-0's worker to end")

    # The JVM dies: the supervisor starts a fresh TorchServe; the next call loads again.
    os.kill(jvm, signal.SIGKILL)
    _wait(lambda: [p for p in _jvms(cache_dir) if p != jvm and _alive(p)], 60, "a new JVM")
    _wait(lambda: not any(_alive(pid) for pid in first_workers), 30, "the old workers to end")

    def invoked() -> bool:
        try:
            again = runtime.invoke_endpoint(
                EndpointName="local-mme", TargetModel="model-0.tar.gz",
                ContentType="application/json", Body=body,
            )  # fmt: skip
        except runtime.exceptions.ServiceUnavailable:
            return False
        return torch.allclose(_pooled(again["Body"].read()), expected, atol=1e-5)

    _wait(invoked, 120, "an answer after the restart")
    [new_jvm] = [p for p in _jvms(cache_dir) if _alive(p)]
    owned = [new_jvm, *descendants(new_jvm)]

    # Ctrl-C: everything ends, the JVM and its workers included.
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 0, stderr
    assert "TorchServe      0.12.0 (embedded)" in stderr
    assert "stopped: gateway, TorchServe and the store are down" in stderr
    assert not [pid for pid in owned if _alive(pid)], "TorchServe and its workers are gone"
    assert not [pid for pid in _jvms(cache_dir) if _alive(pid)]


def test_capacity_profile_on_the_torchserve_stack(
    packaged: tuple[Path, bytes, torch.Tensor], tmp_path: Path
) -> None:
    models, body, _ = packaged
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in ("model-0.tar.gz", "model-1.tar.gz"):
        shutil.copy(models / name, copies / name)
    (tmp_path / "request.json").write_bytes(body)
    path = tmp_path / "profile.json"
    done = subprocess.run(
        [CLI, "capacity", "profile", str(copies), "--stack", "torchserve",
         "--sample", str(tmp_path / "request.json"), "--content-type", "application/json",
         "--repeats", "2", "--out", str(path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the fixed cost of one worker" in done.stderr
    assert "1 distinct artifact(s); worker cost (not subtracted)" in done.stdout
    assert done.stdout.splitlines()[2].split()[:3] == ["model-0.tar.gz", "2", "torchserve"]
    profile = load_profile(path)
    assert (profile.stack, profile.runtime) == ("torchserve", "embedded")
    (artifact,) = profile.artifacts
    # Each model is a Python worker with torch, here and in the cloud alike: measured, kept.
    assert profile.stub_host_bytes > 100 * 2**20
    assert artifact.host_memory_bytes > 100 * 2**20
    assert profile.cloud_host_bytes(artifact) == artifact.host_memory_bytes
    assert artifact.load_s > 0 and artifact.download_s > 0 and artifact.unload_s > 0
    assert artifact.warm_latency_s is not None and artifact.warm_latency_s > 0
