"""Wiring: the store, the model server, the cache and the gateway, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

from mme_local.cache.entry import ModelEntry
from mme_local.cache.layout import clear_stale, model_hash
from mme_local.cache.manager import Budgets, ModelCache
from mme_local.gateway.app import create_app
from mme_local.gateway.service import EndpointIdentity, EndpointService
from mme_local.metrics import Metrics
from mme_local.runtime.base import ModelServer
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.errors import RuntimeExited
from mme_local.runtime.factory import build_model_server
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.procs import rss_bytes
from mme_local.settings import EmulatorSettings
from mme_local.store.embedded import EmbeddedS3
from mme_local.store.publish import ensure_bucket, publish
from mme_local.store.s3url import S3Prefix
from mme_local.store.source import ModelStore, s3_client

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _model_row(entry: ModelEntry, size_bytes: int | None) -> dict[str, Any]:
    return {
        "target_model": entry.target_model,
        "state": entry.state.value,
        "size_bytes": size_bytes,
        "disk_bytes": entry.disk_bytes,
        "memory_bytes": entry.memory_bytes,
        "last_used": _iso(entry.last_used_wall) if entry.invocations else None,
        "invocations": entry.invocations,
        "downloads": entry.downloads,
        "loads": entry.loads,
        "unloads": entry.unloads,
        "in_flight": entry.pins,
        "last_error": entry.last_error,
    }


class Emulator:
    """One local multi-model endpoint. `start()` brings everything up; `stop()` ends all of it."""

    def __init__(
        self,
        settings: EmulatorSettings,
        progress: Progress | None = None,
        triton_url: str | None = None,
        pull: bool = False,
    ) -> None:
        self.settings = settings
        self.pull = pull
        self.progress: Progress = progress or (lambda message: log.info("%s", message))
        self.triton_url = triton_url
        self.metrics = Metrics()
        self.model_data = S3Prefix.parse(settings.model_data_url)
        self._embedded_s3: EmbeddedS3 | None = None
        self._temporary_cache: Path | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.s3_endpoint_url: str | None = settings.s3_endpoint_url
        self.cache_dir = Path()
        self.server: ModelServer | None = None
        self.client: ContainerClient | None = None
        self._cache: ModelCache | None = None
        self._service: EndpointService | None = None

    # ----- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        if settings.s3_endpoint_url is None:
            self.progress("starting the embedded S3 (moto)")
            self._embedded_s3 = EmbeddedS3()
            await self._embedded_s3.start()
            self.s3_endpoint_url = self._embedded_s3.url
        s3 = s3_client(self.s3_endpoint_url, settings.region)
        if self._embedded_s3 is not None:
            await asyncio.to_thread(ensure_bucket, s3, self.model_data.bucket, settings.region)
        if settings.models_dir is not None:
            await asyncio.to_thread(self._seed, s3, settings.models_dir)

        if settings.cache_dir is None:
            self._temporary_cache = Path(tempfile.mkdtemp(prefix="mme-local-cache-"))
            self.cache_dir = self._temporary_cache
        else:
            self.cache_dir = settings.cache_dir.resolve()
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            clear_stale(self.cache_dir)
        work_dir = self.cache_dir / ".runtime"

        self.server = build_model_server(
            settings,
            self.cache_dir,
            work_dir,
            triton_url=self.triton_url,
            pull=self.pull,
            progress=self.progress,
        )
        self.progress(f"starting Triton ({settings.runtime} runtime)")
        await self.server.start()
        self.client = ContainerClient(
            self.server.url,
            load_timeout_s=settings.model_load_timeout_s,
            invoke_timeout_s=settings.invoke_timeout_s,
        )
        self._cache = ModelCache(
            store=ModelStore(s3, self.model_data),
            client=self.client,
            model_url=self.server.model_url,
            cache_dir=self.cache_dir,
            budgets=Budgets(
                max_loaded_models=settings.max_loaded_models,
                host_memory_bytes=settings.host_memory_budget(),
                disk_bytes=settings.disk_limit_bytes,
                max_archive_bytes=settings.max_archive_bytes,
                gpu_memory_bytes=settings.gpu_memory_budget(),
            ),
            metrics=self.metrics,
            memory_probe=self._measure_memory,
            ready_timeout_s=settings.model_ready_timeout_s,
            load_timeout_s=settings.model_load_timeout_s,
            cache_enabled=settings.model_cache.lower() != "disabled",
            gpu_memory_probe=self._measure_gpu_memory if self._gpus_in_use() else None,
        )
        self._service = EndpointService(
            EndpointIdentity(
                settings.endpoint_name,
                settings.variant_name,
                settings.account_id,
                settings.region,
                self.server.log_location,
            ),
            self._cache,
            self.client,
            self.metrics,
        )
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def _seed(self, s3: Any, folder: Path) -> None:
        archives = sorted(folder.glob("*.tar.gz"))
        self.progress(
            f"publishing {len(archives)} artifact(s) from {folder} to {self.model_data.url()}"
        )
        report = publish(s3, self.model_data, [(path, path.name) for path in archives])
        self.progress(f"{len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._cache is not None:
            await self._cache.close()
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._embedded_s3 is not None:
            await self._embedded_s3.stop()
            self._embedded_s3 = None
        if self._temporary_cache is not None:
            shutil.rmtree(self._temporary_cache, ignore_errors=True)
            self._temporary_cache = None

    async def _supervise(self) -> None:
        """Restart a model server that died; requests fail fast with 503 meanwhile."""
        assert self.server is not None and self._cache is not None
        while True:
            await asyncio.sleep(0.5)
            try:
                self.server.check_alive()
                continue
            except RuntimeExited as error:
                log.error("%s", error)
            self._cache.available = False
            self._cache.forget_loaded()
            self.metrics.runtime_restarts.inc()
            try:
                await self.server.stop()
                await self.server.start()
            except Exception:
                log.exception("restarting the model server failed; trying again")
                continue
            if self.client is not None:
                self.client.rebase(self.server.url)
            self._cache.available = True
            log.warning("model server restarted; models will load again on their next request")

    def _measure_memory(self) -> int:
        if self.server is None:
            return 0
        measured = rss_bytes(self.server.process_ids())
        self.metrics.host_memory_bytes.set(measured)
        return measured

    def _gpus_in_use(self) -> bool:
        if self.settings.runtime == "docker" and self.settings.docker_gpus == "none":
            return False
        return bool(visible_gpus())

    def _measure_gpu_memory(self) -> int:
        """The fullest GPU's used bytes, as NVML (through nvidia-smi) reports it."""
        return max((gpu.memory_used_bytes for gpu in visible_gpus()), default=0)

    # ----- what the gateway needs -------------------------------------------------------

    @property
    def cache(self) -> ModelCache:
        if self._cache is None:
            raise RuntimeError("the emulator is not started")
        return self._cache

    @property
    def service(self) -> EndpointService:
        if self._service is None:
            raise RuntimeError("the emulator is not started")
        return self._service

    def healthy(self) -> bool:
        return self._cache is not None and self._cache.available

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    async def models_view(self) -> list[dict[str, Any]]:
        """Every object under the prefix with its state, least recently used first."""
        stored = await asyncio.to_thread(self.cache.store.list_models)
        sizes = {item.target_model: item.size for item in stored}
        entries = self.cache.entries()
        known = {entry.target_model for entry in entries}
        # Objects never requested show as fresh entries: remote, all counts zero.
        entries += [
            ModelEntry(target, model_hash(target))
            for target in sorted(sizes)
            if target not in known
        ]
        return [_model_row(entry, sizes.get(entry.target_model)) for entry in entries]

    def evictions_view(self) -> list[dict[str, Any]]:
        return [
            {
                "target_model": e.target_model,
                "reason": e.reason,
                "idle_s": round(e.idle_s, 3),
                "at": _iso(e.at),
                "freed_memory_bytes": e.freed_memory_bytes,
                "deleted_from_disk": e.deleted_from_disk,
            }
            for e in self.cache.evictions
        ]

    def status_view(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "endpoint_name": settings.endpoint_name,
            "model_data_url": self.model_data.url(),
            "s3_endpoint_url": self.s3_endpoint_url,
            "runtime": settings.runtime,
            "triton_url": self.server.url if self.server else None,
            "triton_version": self.server.version if self.server else None,
            "cache_dir": str(self.cache_dir),
            "loaded_models": self.cache.loaded_count(),
            "max_loaded_models": settings.max_loaded_models,
            "host_memory_bytes": self._measure_memory(),
            "host_memory_budget_bytes": settings.host_memory_budget(),
            "disk_bytes": self.cache.disk_bytes(),
            "disk_budget_bytes": settings.disk_limit_bytes,
        }


def build_app(emulator: Emulator, on_ready: Callable[[Emulator], None] | None = None) -> ASGIApp:
    """The ASGI app whose lifespan starts and stops `emulator`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        await emulator.start()
        if on_ready is not None:
            on_ready(emulator)
        try:
            yield
        finally:
            await emulator.stop()

    return create_app(lambda: emulator, lifespan=lifespan)


def uvicorn_config(
    app: ASGIApp, host: str, port: int, lifespan: Literal["auto", "on", "off"] = "on"
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        http="httptools",
        loop="uvloop",
        timeout_graceful_shutdown=10,
        # Nothing sits in front of the gateway, and SageMaker sends neither header.
        proxy_headers=False,
        server_header=False,
    )
