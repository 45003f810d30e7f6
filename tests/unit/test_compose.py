"""docker-compose.gpu.yml: parses, reserves NVIDIA GPUs for Triton, and agrees with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mme_local.runtime.base import TritonSettings, triton_arguments, triton_environment
from mme_local.runtime.docker_runtime import CONTAINER_MODELS_DIR, PLACEHOLDER_REPOSITORY

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


def _options(command: list[str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in command if part.startswith("--") and "=" in part)


def test_triton_reserves_nvidia_gpus(services: dict[str, Any]) -> None:
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] for device in devices
    )


def test_triton_runs_as_sagemaker_serve_does(services: dict[str, Any]) -> None:
    triton = services["triton"]
    assert triton["image"].endswith("tritonserver:24.09-py3}")
    assert triton["command"] == [
        "tritonserver",
        *triton_arguments(TritonSettings(), 8080, PLACEHOLDER_REPOSITORY),
    ]
    assert triton_environment().items() <= triton["environment"].items()
    assert PLACEHOLDER_REPOSITORY in triton["tmpfs"]
    assert f"models:{CONTAINER_MODELS_DIR}:ro" in triton["volumes"]


def test_controller_shares_the_cache_and_reaches_triton(services: dict[str, Any]) -> None:
    controller = services["controller"]
    options = _options(controller["command"])
    assert controller["command"][0] == "up"
    assert options["--runtime"] == "external"
    assert options["--triton-url"] == "http://triton:8080"
    assert options["--cache-dir"] == CONTAINER_MODELS_DIR
    assert f"models:{CONTAINER_MODELS_DIR}" in controller["volumes"]
    assert options["--s3-endpoint"] == "http://minio:9000"
    assert controller["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_the_bucket_is_created_and_ports_stay_on_loopback(services: dict[str, Any]) -> None:
    bucket = _options(services["controller"]["command"])["--model-data-url"].split("/")[2]
    assert f"store/{bucket}" in services["minio-bucket"]["entrypoint"][-1]
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_controller_flags_are_options_of_up(services: dict[str, Any]) -> None:
    import typer.main

    from mme_local.cli.app import app

    up = typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]
    known = {option for param in up.params for option in param.opts}
    assert set(_options(services["controller"]["command"])) <= known
