"""Pick the model server `mme-local up` runs, from the emulator's settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mme_local.runtime import provision
from mme_local.runtime.base import ModelServer
from mme_local.runtime.docker_runtime import DockerTriton
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.external import ExternalTriton
from mme_local.settings import EmulatorSettings


def build_model_server(
    settings: EmulatorSettings,
    cache_dir: Path,
    work_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
) -> ModelServer:
    """The runtime named by `settings.runtime`; nothing is started yet.

    `progress` hears about a first-use Triton download.
    """
    if settings.runtime == "embedded":
        install = provision.ensure(settings.triton_home, progress=progress)
        return EmbeddedTriton(install, work_dir, settings.triton)
    if settings.runtime == "docker":
        return DockerTriton(
            cache_dir,
            settings.triton,
            image=settings.docker_image,
            gpus=settings.docker_gpus,
            endpoint_name=settings.endpoint_name,
            work_dir=work_dir,
            pull=settings.pull,
        )
    if settings.runtime == "external":
        if not settings.triton_url:
            raise RuntimeFailure("the external runtime needs the Triton URL (--triton-url)")
        return ExternalTriton(settings.triton_url, cache_dir, settings.triton.startup_timeout_s)
    raise AssertionError(f"settings admitted an unknown runtime {settings.runtime!r}")
