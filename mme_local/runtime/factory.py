"""Pick the model server `mme-local up` runs, and the client that speaks its dialect, from the
emulator's settings: the only place that asks which stack an endpoint runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mme_local.runtime import provision
from mme_local.runtime.base import ModelServer
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.dialect import dialect_for
from mme_local.runtime.docker_runtime import DockerTriton
from mme_local.runtime.embedded import EmbeddedTriton
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.external import ExternalTriton
from mme_local.runtime.model_list_mutex import ModelListMutex
from mme_local.runtime.torchserve import EmbeddedTorchServe
from mme_local.runtime.torchserve_install import find_install
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
    if settings.stack == "torchserve":
        # Settings admit only the embedded runtime for this stack.
        return EmbeddedTorchServe(find_install(), work_dir, settings.torchserve)
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


def build_container_client(
    settings: EmulatorSettings,
    server: ModelServer,
    on_invocation_held: Callable[[float], None] | None = None,
) -> ContainerClient:
    """A client for `server`'s MME container API, in its stack's dialect, playing Triton
    25.11's model-list mutex when the settings say so (`on_invocation_held` hears each
    invocation's wait for unloads)."""
    mutex = ModelListMutex(on_invocation_held) if settings.unloads_block_invokes() else None
    return ContainerClient(
        server.url,
        load_timeout_s=settings.model_load_timeout_s,
        invoke_timeout_s=settings.invoke_timeout_s,
        dialect=dialect_for(settings.stack),
        model_list_mutex=mutex,
    )


def server_title(settings: EmulatorSettings) -> str:
    """How messages name the model server ("Triton", "TorchServe")."""
    return "TorchServe" if settings.stack == "torchserve" else "Triton"
