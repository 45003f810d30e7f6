"""The docker runtime's container specification and its one-line errors, with a fake engine."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from docker.types import DeviceRequest

from mme_local.runtime.base import TritonSettings, free_port, triton_arguments
from mme_local.runtime.docker_runtime import (
    DEFAULT_IMAGE,
    BindMount,
    DockerTriton,
    DockerUnavailable,
    GpuRuntimeMissing,
    ImageMissing,
    InvalidGpuSelection,
    container_spec,
    device_requests,
)
from mme_local.runtime.errors import RuntimeExited, RuntimeFailure
from mme_local.runtime.external import ExternalTriton
from mme_local.runtime.factory import build_model_server
from mme_local.settings import EmulatorSettings


def _spec(tmp_path: Path, gpus: str = "all", **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "image": DEFAULT_IMAGE,
        "gpus": gpus,
        "endpoint_name": "local-mme",
        "port": 18080,
        "cache_dir": tmp_path / "cache",
        "settings": TritonSettings(),
    }
    arguments.update(overrides)
    return container_spec(**arguments)


def test_cache_is_mounted_read_only_at_opt_ml_models(tmp_path: Path) -> None:
    spec = _spec(tmp_path, extra_mounts=[BindMount(Path("/usr"), "/usr")])
    first, extra = spec["mounts"]
    assert first == {
        "Target": "/opt/ml/models",
        "Source": str(tmp_path / "cache"),
        "Type": "bind",
        "ReadOnly": True,
    }
    assert (extra["Target"], extra["Source"], extra["ReadOnly"]) == ("/usr", "/usr", True)
    assert spec["tmpfs"] == {"/tmp/sagemaker": "size=1m"}


def test_command_is_sagemaker_serve_flags(tmp_path: Path) -> None:
    settings = TritonSettings(thread_count=4, extra_args=("--log-info=true",))
    spec = _spec(tmp_path, settings=settings)
    assert spec["command"] == [
        "tritonserver",
        *triton_arguments(settings, 18080, "/tmp/sagemaker"),
    ]
    assert "--sagemaker-port=18080" in spec["command"]
    assert "--model-repository=/tmp/sagemaker" in spec["command"]
    assert spec["command"][-1] == "--log-info=true"


def test_environment_is_sagemaker_mme(tmp_path: Path) -> None:
    env = _spec(tmp_path, environment={"EXTRA": "1"})["environment"]
    assert env["SAGEMAKER_MULTI_MODEL"] == "true"
    assert env["SAGEMAKER_TRITON_PING_MODE"] == "live"
    assert env["SAGEMAKER_BIND_TO_PORT"] == "18080"
    assert env["SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE"] == str(16 * 1024 * 1024)
    assert env["EXTRA"] == "1"
    assert "NVIDIA_VISIBLE_DEVICES" not in env


def test_host_network_shm_ulimits_labels(tmp_path: Path) -> None:
    spec = _spec(tmp_path, name="mme-local-x")
    assert spec["network_mode"] == "host"
    assert "ports" not in spec
    assert spec["shm_size"] == 2 * 1024**3
    assert {u["Name"]: u["Hard"] for u in spec["ulimits"]} == {
        "memlock": -1,
        "stack": 64 * 1024 * 1024,
    }
    assert spec["labels"]["mme-local.endpoint"] == "local-mme"
    assert spec["name"] == "mme-local-x"
    assert spec["detach"] is True


def test_gpu_device_requests() -> None:
    assert device_requests("all") == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert device_requests("0,1") == [DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])]
    assert device_requests("0") == [DeviceRequest(device_ids=["0"], capabilities=[["gpu"]])]
    assert device_requests("none") == []
    with pytest.raises(InvalidGpuSelection):
        device_requests("two")


def test_no_gpus_hides_them_from_nvidia_images(tmp_path: Path) -> None:
    spec = _spec(tmp_path, gpus="none")
    assert spec["device_requests"] == []
    assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_model_url_maps_the_cache_into_the_container(tmp_path: Path) -> None:
    triton = DockerTriton(tmp_path / "cache", TritonSettings(), gpus="none", work_dir=tmp_path)
    model_dir = tmp_path / "cache" / "0f3a9c" / "model"
    assert triton.model_url(model_dir) == "/opt/ml/models/0f3a9c/model"
    with pytest.raises(RuntimeFailure):
        triton.model_url(tmp_path / "elsewhere" / "model")


# A fake engine: enough of docker.DockerClient for start()'s failure paths.


class FakeContainer:
    def __init__(
        self, start_error: Exception | None, labels: dict[str, str] | None = None, name: str = ""
    ) -> None:
        self.id = "c0ffee"
        self.start_error = start_error
        self.removed = False
        self.labels = labels or {}
        self.name = name

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def stop(self, timeout: int) -> None:
        pass

    def remove(self, force: bool, v: bool) -> None:
        self.removed = True


class FakeImages:
    def __init__(self, present: bool) -> None:
        self.present = present

    def get(self, name: str) -> object:
        if not self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return object()


class FakeContainers:
    def __init__(self, start_error: Exception | None) -> None:
        self.start_error = start_error
        self.created: list[FakeContainer] = []
        self.kwargs: dict[str, Any] = {}
        self.existing: list[FakeContainer] = []

    def list(self, all: bool, filters: dict[str, str]) -> list[FakeContainer]:
        assert all, "stopped containers are leftovers too"
        return [c for c in self.existing if filters["label"] in c.labels and not c.removed]

    def create(self, **kwargs: Any) -> FakeContainer:
        self.kwargs = kwargs
        container = FakeContainer(self.start_error)
        self.created.append(container)
        return container


class FakeNetworks:
    def __init__(self, bridge: bool) -> None:
        self.bridge = bridge

    def list(self, names: list[str]) -> list[object]:
        return [object()] if self.bridge and names == ["bridge"] else []


class FakeEngine:
    def __init__(
        self,
        reachable: bool = True,
        image_present: bool = True,
        start_error: Exception | None = None,
        bridge: bool = True,
    ) -> None:
        self.reachable = reachable
        self.images = FakeImages(image_present)
        self.containers = FakeContainers(start_error)
        self.networks = FakeNetworks(bridge)

    def ping(self) -> bool:
        if not self.reachable:
            raise docker.errors.DockerException("Error while fetching server API version")
        return True


def _triton(tmp_path: Path, engine: FakeEngine, gpus: str = "all") -> DockerTriton:
    return DockerTriton(
        tmp_path / "cache",
        TritonSettings(),
        image="nvcr.io/nvidia/tritonserver:24.09-py3",
        gpus=gpus,
        endpoint_name="local-mme",
        work_dir=tmp_path / "triton",
        client=engine,
    )


async def test_unreachable_engine_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable) as raised:
        await _triton(tmp_path, FakeEngine(reachable=False)).start()
    assert str(raised.value) == (
        "Docker engine not reachable at unix:///nonexistent/docker.sock: "
        "start dockerd or set DOCKER_HOST"
    )


async def test_unreachable_real_client_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    triton = DockerTriton(tmp_path / "cache", TritonSettings(), gpus="none", work_dir=tmp_path)
    with pytest.raises(DockerUnavailable) as raised:
        await triton.start()
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"Docker engine not reachable at unix://{tmp_path}/")


async def test_missing_image_is_one_line_and_never_pulled(tmp_path: Path) -> None:
    engine = FakeEngine(image_present=False)
    with pytest.raises(ImageMissing) as raised:
        await _triton(tmp_path, engine).start()
    image = "nvcr.io/nvidia/tritonserver:24.09-py3"
    assert str(raised.value) == (
        f"image {image} is not present locally; pull it with `docker pull {image}`"
    )
    assert engine.containers.created == []


async def test_missing_gpu_runtime_is_one_line_and_removes_the_container(tmp_path: Path) -> None:
    refusal = docker.errors.APIError(
        "500 Server Error",
        explanation='could not select device driver "" with capabilities: [[gpu]]',
    )
    engine = FakeEngine(start_error=refusal)
    with pytest.raises(GpuRuntimeMissing) as raised:
        await _triton(tmp_path, engine).start()
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        "--gpus all asked for GPUs but the Docker engine has no NVIDIA GPU runtime "
        '(could not select device driver "" with capabilities: [[gpu]]): '
        "install the NVIDIA Container Toolkit, or use --gpus none"
    )
    assert engine.containers.kwargs["device_requests"] == device_requests("all")
    assert "detach" not in engine.containers.kwargs
    assert [c.removed for c in engine.containers.created] == [True]


async def test_other_start_failures_are_not_blamed_on_gpus(tmp_path: Path) -> None:
    refusal = docker.errors.APIError("500 Server Error", explanation="port is busy")
    engine = FakeEngine(start_error=refusal)
    with pytest.raises(RuntimeFailure) as raised:
        await _triton(tmp_path, engine, gpus="none").start()
    assert not isinstance(raised.value, GpuRuntimeMissing)
    assert "port is busy" in str(raised.value)


def test_check_alive_reports_an_exit_with_the_log_tail(tmp_path: Path) -> None:
    triton = _triton(tmp_path, FakeEngine())
    triton.work_dir.mkdir()
    triton.log_path.write_text("first\nlast words\n")
    triton._container = FakeContainer(None)
    triton._returncode = 139
    triton._exited.set()
    with pytest.raises(RuntimeExited) as raised:
        triton.check_alive()
    assert raised.value.returncode == 139
    assert raised.value.log_tail.endswith("last words")


def test_factory_picks_the_docker_runtime(tmp_path: Path) -> None:
    settings = EmulatorSettings(runtime="docker", docker_gpus="0", endpoint_name="e1")
    server = build_model_server(settings, tmp_path / "cache", tmp_path / "work")
    assert isinstance(server, DockerTriton)
    assert (server.gpus, server.endpoint_name, server.image) == ("0", "e1", settings.docker_image)
    # The runtime's name is checked where settings are made, before anything starts.
    with pytest.raises(ValueError, match="unknown runtime"):
        build_model_server(EmulatorSettings(runtime="podman"), tmp_path, tmp_path)
    with pytest.raises(RuntimeFailure, match="--triton-url"):
        build_model_server(EmulatorSettings(runtime="external"), tmp_path, tmp_path)


class _Ping(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_external_triton_waits_for_ping_and_maps_urls(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        triton = ExternalTriton(f"http://127.0.0.1:{server.server_port}/", tmp_path)
        await triton.start()
        assert triton.url == f"http://127.0.0.1:{server.server_port}"
        assert triton.model_url(tmp_path / "ab12" / "model") == "/opt/ml/models/ab12/model"
        assert triton.process_ids() == []
        triton.check_alive()
        await triton.stop()
    finally:
        server.shutdown()
        server.server_close()


async def test_external_triton_that_never_answers_fails_clearly(tmp_path: Path) -> None:
    triton = ExternalTriton(f"http://127.0.0.1:{free_port()}", tmp_path, startup_timeout_s=0.3)
    with pytest.raises(RuntimeFailure, match="did not answer /ping"):
        await triton.start()
