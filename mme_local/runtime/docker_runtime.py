"""Triton in a container: NVIDIA's GPU image (or SageMaker's own) run as SageMaker runs it.

The cache folder is mounted at `/opt/ml/models`, so load URLs have the form SageMaker uses
(`/opt/ml/models/<hash>/model`), which Triton >= 2.70 insists on.

Triton's SageMaker port has no authentication and binds every interface of its network, so
the container runs on the engine's bridge network with the port published on the host's
127.0.0.1 only. An engine without a bridge (`dockerd --bridge=none`) leaves only the host's
network, where the port is open to anyone who can reach the host; that is logged as a warning.

A controller that is SIGKILLed or OOM-killed cannot remove its container, so every start first
removes containers whose controller is provably gone: each container names a lock file its
controller holds (see docker_owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from mme_local.runtime.base import (
    TritonSettings,
    free_port,
)
from mme_local.runtime.docker_owner import OwnerLock, remove_leftovers
from mme_local.runtime.docker_spec import (
    CONTAINER_MODELS_DIR,
    DEFAULT_ENGINE,
    DEFAULT_IMAGE,
    DEFAULT_SHM_BYTES,
    DEFAULT_ULIMITS,
    ENDPOINT_LABEL,
    PLACEHOLDER_REPOSITORY,
    PORT_LABEL,
    BindMount,
    DockerUnavailable,
    GpuRuntimeMissing,
    ImageMissing,
    InvalidGpuSelection,
    container_environment,
    container_model_url,
    container_spec,
    device_requests,
    engine_address,
    has_bridge,
)
from mme_local.runtime.errors import RuntimeExited, RuntimeFailure
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.local_triton import LocalTriton
from mme_local.runtime.procs import serving_model

__all__ = [
    "CONTAINER_MODELS_DIR",
    "DEFAULT_ENGINE",
    "DEFAULT_IMAGE",
    "DEFAULT_SHM_BYTES",
    "DEFAULT_ULIMITS",
    "ENDPOINT_LABEL",
    "PLACEHOLDER_REPOSITORY",
    "PORT_LABEL",
    "BindMount",
    "DockerTriton",
    "DockerUnavailable",
    "GpuRuntimeMissing",
    "ImageMissing",
    "InvalidGpuSelection",
    "connect",
    "container_environment",
    "container_model_url",
    "container_spec",
    "device_requests",
    "engine_address",
    "has_bridge",
]

# Engine answers that mean "no GPU runtime": no device driver for --gpus, the NVIDIA hook
# failing, or an engine configured with a runtime it lacks.
_GPU_FAILURES = ("could not select device driver", "nvidia-container", "runtime name: nvidia")
_ALIVE_STATES = ("created", "running", "restarting", "paused")

log = logging.getLogger(__name__)
# Triton's own output, line by line, so it shows in the controller's log beside its own.
triton_log = logging.getLogger("mme_local.triton")


def connect(client: Any | None = None) -> Any:
    """A docker client that has answered a ping, or DockerUnavailable."""
    try:
        if client is None:
            client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DockerUnavailable(
            f"Docker engine not reachable at {engine_address()}: start dockerd or set DOCKER_HOST"
        ) from error
    return client


def _first_line(error: BaseException) -> str:
    explanation = getattr(error, "explanation", None) or str(error)
    return str(explanation).strip().splitlines()[0] if str(explanation).strip() else repr(error)


class DockerTriton(LocalTriton):
    """tritonserver in a container, with the flags and environment of SageMaker's `serve`.

    The container is created per start and removed on stop (and on a failed start); its logs
    are copied into `work_dir/tritonserver.log` and the `mme_local.triton` logger by a thread
    that also notices when the container ends.
    """

    describe = "the Triton container"

    def __init__(
        self,
        cache_dir: Path,
        settings: TritonSettings,
        image: str = DEFAULT_IMAGE,
        gpus: str = "all",
        endpoint_name: str = "local-mme",
        work_dir: Path | None = None,
        *,
        extra_mounts: Sequence[BindMount] = (),
        environment: Mapping[str, str] | None = None,
        shm_size_bytes: int = DEFAULT_SHM_BYTES,
        ulimits: Mapping[str, int] = DEFAULT_ULIMITS,
        pull: bool = False,
        client: Any | None = None,
    ) -> None:
        """`extra_mounts` and `environment` exist for stand-in images that run a host Triton.

        `ulimits` can be narrowed where the engine may not raise a limit (without
        CAP_SYS_RESOURCE, memlock stays at the host's). `pull=True` pulls a missing image
        instead of failing; it is never done silently.
        """
        device_requests(gpus)  # reject a bad --gpus before anything starts
        self.cache_dir = cache_dir.resolve()
        self.image = image
        self.gpus = gpus
        self.endpoint_name = endpoint_name
        # Inside the cache by default (as the emulator does): nothing is written outside it.
        self.work_dir = work_dir or self.cache_dir / ".runtime"
        super().__init__(settings, self.work_dir / "tritonserver.log", None)
        self.extra_mounts = tuple(extra_mounts)
        self.environment = dict(environment or {})
        self.shm_size_bytes = shm_size_bytes
        self.ulimits = dict(ulimits)
        self.pull = pull
        self._client = client
        self._container: Any | None = None
        self._stopping = threading.Event()
        self._exited = threading.Event()
        self._returncode: int | None = None
        self._log_thread: threading.Thread | None = None
        self._log_stream: Any | None = None
        self.owner = OwnerLock(self.work_dir)
        """Held from before a container is made until it is removed."""

    @property
    def container_id(self) -> str | None:
        return str(self._container.id) if self._container is not None else None

    def model_url(self, model_dir: Path) -> str:
        return container_model_url(self.cache_dir, model_dir)

    def spec(self, port: int, network: str = "bridge") -> dict[str, Any]:
        return container_spec(
            image=self.image,
            gpus=self.gpus,
            endpoint_name=self.endpoint_name,
            port=port,
            cache_dir=self.cache_dir,
            settings=self.settings,
            shm_size_bytes=self.shm_size_bytes,
            extra_mounts=self.extra_mounts,
            environment=self.environment,
            ulimits=self.ulimits,
            name=f"mme-local-{self.endpoint_name}-{port}",
            network=network,
            owner=self.owner.labels(),
        )

    async def start(self) -> None:
        if self._container is not None:
            if not self._exited.is_set():
                return
            await self.stop()  # the old container ended on its own; clear it away first
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._fresh_log()
        self.owner.acquire()
        # A restart keeps the port, so clients made for the first start still reach it.
        self._port = self.settings.port or self._port or free_port()
        self._stopping.clear()
        self._exited.clear()
        self._returncode = None
        try:
            await asyncio.to_thread(self._create_and_start, self._port)
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    def _create_and_start(self, port: int) -> None:
        client = self._client = connect(self._client)
        remove_leftovers(client)
        self._ensure_image(client)
        kwargs = self.spec(port, self._network(client, port))
        del kwargs["detach"]  # `create` never waits; only `run` takes it
        log.info("starting container %s: %s", self.image, " ".join(kwargs["command"]))
        try:
            self._container = client.containers.create(**kwargs)
            self._container.start()
        except docker.errors.ImageNotFound as error:
            raise self._image_missing() from error
        except docker.errors.APIError as error:
            raise self._start_failure(error) from error
        self._log_thread = threading.Thread(
            target=self._follow_logs,
            args=(self._container,),
            name=f"triton-logs-{self.endpoint_name}",
            daemon=True,
        )
        self._log_thread.start()

    def _network(self, client: Any, port: int) -> str:
        if has_bridge(client):
            return "bridge"
        log.warning(
            "the Docker engine has no bridge network: Triton's port %d shares the host's "
            "network and listens on every interface, unauthenticated (anyone who reaches it "
            "can load, unload and invoke models); run dockerd with a bridge to confine it",
            port,
        )
        return "host"

    def _ensure_image(self, client: Any) -> None:
        try:
            client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise self._image_missing() from None
        log.info("pulling %s", self.image)
        try:
            client.images.pull(self.image)
        except docker.errors.APIError as error:
            raise ImageMissing(f"could not pull {self.image}: {_first_line(error)}") from error

    def _image_missing(self) -> ImageMissing:
        return ImageMissing(
            f"image {self.image} is not present locally; pull it with `docker pull {self.image}`"
        )

    def _start_failure(self, error: docker.errors.APIError) -> RuntimeFailure:
        reason = _first_line(error)
        if device_requests(self.gpus) and any(marker in reason for marker in _GPU_FAILURES):
            return GpuRuntimeMissing(
                f"--gpus {self.gpus} asked for GPUs but the Docker engine has no NVIDIA GPU "
                f"runtime ({reason}): install the NVIDIA Container Toolkit, or use --gpus none"
            )
        return RuntimeFailure(f"could not start a container from {self.image}: {reason}")

    def _follow_logs(self, container: Any) -> None:
        """Copy the container's output until it ends, then record how it ended."""
        with self.log_path.open("ab") as sink:
            try:
                self._log_stream = container.logs(stream=True, follow=True)
                for chunk in self._log_stream:
                    sink.write(chunk)
                    sink.flush()
                    if triton_log.isEnabledFor(logging.INFO):
                        for line in chunk.decode(errors="replace").splitlines():
                            triton_log.info("%s", line)
            except (docker.errors.DockerException, requests.RequestException, OSError) as error:
                # A closed stream on stop is expected; anything else falls back to polling.
                if not self._stopping.is_set():
                    log.warning("lost the Triton container's log stream: %r", error)
        self._watch_until_exit(container)

    def _watch_until_exit(self, container: Any) -> None:
        while not self._stopping.is_set():
            try:
                container.reload()
                state = container.attrs.get("State", {})
            except (docker.errors.DockerException, requests.RequestException):
                state = {"Status": "unknown", "ExitCode": None}
            if state.get("Status") not in _ALIVE_STATES:
                self._returncode = state.get("ExitCode")
                self._exited.set()
                return
            self._stopping.wait(1.0)

    def check_alive(self) -> None:
        if self._container is None or self._stopping.is_set():
            return
        if self._exited.is_set():
            # The log thread sets the flag after its last write: the log is complete, and
            # nothing here waits for a thread on the event loop.
            raise RuntimeExited(self._returncode, self.log_tail())

    @property
    def open_port(self) -> int | None:
        # On the engine's bridge the port is published on 127.0.0.1 only; on an engine
        # without one the container start already warned that it shares the host's network.
        return None

    @property
    def uses_gpus(self) -> bool:
        return self.gpus != "none" and bool(visible_gpus())

    def model_process_ids(self, model_name: str) -> list[int] | None:
        pids = self.process_ids()
        return serving_model(pids, model_name) if pids else None

    def process_ids(self) -> list[int]:
        """Host PIDs of the container's processes, as `docker top` reports them.

        They are only readable in /proc where the controller shares the host's PID namespace
        (not from inside another container); elsewhere memory accounting sees nothing.
        """
        container = self._container
        if container is None or self._exited.is_set():
            return []
        try:
            top = container.top()
        except (docker.errors.DockerException, requests.RequestException):
            return []
        return list(_pids_from_top(top))

    async def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and remove the container."""
        container = self._container
        self._stopping.set()
        if container is None:
            self.owner.release()
            return
        removed = await asyncio.to_thread(self._remove, container)
        thread = self._log_thread
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
        self._container = None
        self._log_thread = None
        if removed:
            self.owner.release()
        # Else the container may still exist: the lock stays held so no one takes it for a
        # leftover of a dead controller while this one lives (the kernel drops it at exit).

    def _remove(self, container: Any) -> bool:
        """Stop and remove the container; False if it may still exist."""
        try:
            container.stop(timeout=max(1, round(self.settings.stop_grace_s)))
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as error:
            log.warning("stopping container %s failed: %r", container.id, error)
        stream = self._log_stream
        if stream is not None:
            # Closing a stream that already ended may fail; there is nothing left to free then.
            with contextlib.suppress(Exception):
                stream.close()
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as error:
            log.warning("removing container %s failed: %r", container.id, error)
            return False
        return True


def _pids_from_top(top: Mapping[str, Any]) -> Iterator[int]:
    titles = [str(title) for title in top.get("Titles", [])]
    if "PID" not in titles:
        return
    column = titles.index("PID")
    for row in top.get("Processes", []) or []:
        value = str(row[column])
        if value.isdigit():
            yield int(value)
