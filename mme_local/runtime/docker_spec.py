"""The container a docker runtime asks for: image, mounts, ports, GPUs, environment, labels.

Pure functions of the settings (and the engine's networks), so the spec is tested without an
engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import docker.errors
import requests
from docker.types import DeviceRequest, Ulimit
from docker.types import Mount as DockerMount

from mme_local.runtime.base import TritonSettings, triton_arguments, triton_environment
from mme_local.runtime.errors import RuntimeFailure

DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:24.09-py3"
CONTAINER_MODELS_DIR = "/opt/ml/models"
# SageMaker's `serve` points Triton at this empty placeholder in MME mode; every model is
# registered as its own repository at load time.
PLACEHOLDER_REPOSITORY = "/tmp/sagemaker"
ENDPOINT_LABEL = "mme-local.endpoint"
PORT_LABEL = "mme-local.port"
DEFAULT_ENGINE = "unix:///var/run/docker.sock"

GiB = 1024**3
# Docker's default /dev/shm is 64 MB; each Python-backend model maps its own region (16 MB by
# default, growing), so a few models would exhaust it. tmpfs only uses what is written.
DEFAULT_SHM_BYTES = 2 * GiB
# NVIDIA's documented `docker run` limits for Triton (-1: unlimited).
DEFAULT_ULIMITS: Mapping[str, int] = MappingProxyType({"memlock": -1, "stack": 64 * 1024 * 1024})


class DockerUnavailable(RuntimeFailure):
    """No Docker engine answers where the client looks for one."""


class ImageMissing(RuntimeFailure):
    """The Triton image is not in the engine's local store (and was not to be pulled)."""


class GpuRuntimeMissing(RuntimeFailure):
    """GPUs were asked for but the engine cannot hand them to a container."""


class InvalidGpuSelection(RuntimeFailure, ValueError):
    """The --gpus value is neither all, none, nor a list of device ids."""


@dataclass(frozen=True)
class BindMount:
    """A host path mounted into the container (stand-in images need their host tree)."""

    source: Path
    target: str
    read_only: bool = True


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def device_requests(gpus: str) -> list[DeviceRequest]:
    """`--gpus` as Docker's CLI reads it: all, none, or device indexes/UUIDs like "0,1"."""
    value = gpus.strip()
    if value.lower() in ("none", ""):
        return []
    if value.lower() == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    ids = [part.strip() for part in value.split(",")]
    if not all(part.isdigit() or part.startswith(("GPU-", "MIG-")) for part in ids):
        raise InvalidGpuSelection(
            f'--gpus takes "all", "none" or device ids like "0,1"; got {gpus!r}'
        )
    return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


def container_model_url(cache_dir: Path, model_dir: Path) -> str:
    """`<cache_dir>/<hash>/model` on the host is `/opt/ml/models/<hash>/model` in the container."""
    try:
        relative = model_dir.resolve().relative_to(cache_dir.resolve())
    except ValueError:
        raise RuntimeFailure(
            f"{model_dir} is outside the cache folder {cache_dir} mounted in the container"
        ) from None
    return str(PurePosixPath(CONTAINER_MODELS_DIR, *relative.parts))


def container_environment(settings: TritonSettings, port: int, gpus: str) -> dict[str, str]:
    """What SageMaker's `serve` reads, set to the values the command line already carries."""
    environment = {
        **triton_environment(),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_TRITON_THREAD_COUNT": str(settings.thread_count),
        "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE": str(settings.shm_default_bytes),
        "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE": str(settings.shm_growth_bytes),
        "SAGEMAKER_TRITON_LOG_VERBOSE": str(settings.log_verbose),
    }
    if not device_requests(gpus):
        # NVIDIA's images default to all GPUs; on an engine whose default runtime is nvidia
        # that would hand them over even without a device request.
        environment["NVIDIA_VISIBLE_DEVICES"] = "void"
    return environment


def container_spec(
    *,
    image: str,
    gpus: str,
    endpoint_name: str,
    port: int,
    cache_dir: Path,
    settings: TritonSettings,
    shm_size_bytes: int = DEFAULT_SHM_BYTES,
    extra_mounts: Sequence[BindMount] = (),
    environment: Mapping[str, str] | None = None,
    ulimits: Mapping[str, int] = DEFAULT_ULIMITS,
    name: str | None = None,
    network: str = "host",
    owner: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for docker SDK's `containers.run` (minus `detach` for `create`).

    `network` "bridge" publishes the port on the host's 127.0.0.1 only; "host" shares the
    host's network (the port then listens on every interface). `owner` adds labels.
    """
    mounts = [
        DockerMount(CONTAINER_MODELS_DIR, str(cache_dir), type="bind", read_only=True),
        *(
            DockerMount(m.target, str(m.source), type="bind", read_only=m.read_only)
            for m in extra_mounts
        ),
    ]
    return {
        "image": image,
        "command": ["tritonserver", *triton_arguments(settings, port, PLACEHOLDER_REPOSITORY)],
        "environment": {
            **container_environment(settings, port, gpus),
            **(environment or {}),
        },
        "mounts": mounts,
        "tmpfs": {PLACEHOLDER_REPOSITORY: "size=1m"},
        "device_requests": device_requests(gpus),
        "shm_size": shm_size_bytes,
        "ulimits": [Ulimit(name=n, soft=limit, hard=limit) for n, limit in ulimits.items()],
        "labels": {ENDPOINT_LABEL: endpoint_name, PORT_LABEL: str(port), **(owner or {})},
        "network_mode": network,
        **({"ports": {f"{port}/tcp": ("127.0.0.1", port)}} if network == "bridge" else {}),
        "name": name,
        "detach": True,
    }


def has_bridge(client: Any) -> bool:
    """Whether the engine has its default bridge network (not under `dockerd --bridge=none`)."""
    try:
        return bool(client.networks.list(names=["bridge"]))
    except (docker.errors.DockerException, requests.RequestException):
        return False
