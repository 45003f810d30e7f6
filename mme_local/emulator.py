"""The composition root: builds one local endpoint's parts and owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mme_local.background_task import BackgroundTask
from mme_local.cache.layout import CacheFolder
from mme_local.cache.manager import ModelCache
from mme_local.cache.policy import Budgets
from mme_local.cache.watch import ArtifactWatcher
from mme_local.capacity.trace import TraceWriter
from mme_local.cloudwatch import CloudWatchFile
from mme_local.gateway.admin import AdminViews, InstanceView
from mme_local.gateway.app import Gateway
from mme_local.gateway.fleet import Fleet, Member
from mme_local.gateway.live_recorder import LiveRecorder
from mme_local.gateway.live_views import LiveViews, StoreListing
from mme_local.gateway.service import (
    EndpointIdentity,
    EndpointService,
    InvocationRecord,
    ServiceOptions,
)
from mme_local.loop_lag import LoopLagMonitor
from mme_local.metrics import Metrics
from mme_local.runtime.base import ModelServer
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.factory import build_container_client, build_model_server, server_title
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.probes import ServerProbes
from mme_local.runtime.supervisor import RuntimeSupervisor
from mme_local.runtime.utilisation import UtilisationSampler
from mme_local.settings import EmulatorSettings
from mme_local.store.embedded import EmbeddedS3
from mme_local.store.publish import ensure_bucket
from mme_local.store.s3url import S3Prefix
from mme_local.store.seed import seed_folder
from mme_local.store.source import ModelStore, s3_client

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class Emulator:
    """Builds one local multi-model endpoint's parts and owns their lifecycle.

    `start()` brings up, in order, the store (embedded or external), the cache folder, the
    model server and its supervisor, the cache and the gateway's service and views; `stop()`
    ends all of it in reverse order, whatever failed half-way.
    """

    def __init__(self, settings: EmulatorSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress: Progress = progress or (lambda message: log.info("%s", message))
        self.metrics = Metrics(settings.endpoint_name, settings.variant_name)
        self.model_data = S3Prefix.parse(settings.model_data_url)
        self.s3_endpoint_url: str | None = settings.s3_endpoint_url
        self.cache_folder = CacheFolder(settings.cache_dir)
        self._embedded_s3: EmbeddedS3 | None = None
        self.server: ModelServer | None = None
        self._client: ContainerClient | None = None
        self._supervisor: RuntimeSupervisor | None = None
        self._cache: ModelCache | None = None
        self._gateway: Gateway | None = None
        self._background: list[BackgroundTask] = []
        self._trace: TraceWriter | None = None
        self.artifact_watcher: ArtifactWatcher | None = None
        self.instances: list[EmulatorInstance] = []
        """The endpoint's instances, in index order; `server` and `cache` are the first's."""

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
            await asyncio.to_thread(
                seed_folder,
                s3,
                self.model_data,
                settings.models_dir,
                self.progress,
                settings.overwrite,
            )

        root = await self.cache_folder.open()
        store = ModelStore(s3, self.model_data)
        for index in range(settings.instance_count):
            await self._start_instance(index, root, store)
        first = self.instances[0]
        server, cache, probes, client = first.server, first.cache, first.probes, first.client
        self.server = server
        self._cache = cache
        self._client = client
        self._supervisor = supervisor = first.supervisor
        caches = [member.cache for member in self.instances]
        self.artifact_watcher = ArtifactWatcher(
            store, cache, settings.artifact_check_interval_s, caches[1:]
        )
        servers = [member.server for member in self.instances]
        self._background = [
            LoopLagMonitor(self.metrics),
            self.artifact_watcher,
            UtilisationSampler(
                self.metrics,
                lambda: [each.process_ids() for each in servers],
                root,
                settings.metrics_period_s,
            ),
        ]
        if settings.cloudwatch_file is not None:
            self._background.append(
                CloudWatchFile(
                    self.metrics,
                    settings.cloudwatch_file,
                    settings.metrics_period_s,
                    instances=settings.instance_count,
                )
            )
        for task in self._background:
            task.start()
        fleet = Fleet(
            [
                Member(m.index, m.cache, m.client, running=m.supervisor_running)
                for m in self.instances
            ]
        )
        identity = EndpointIdentity(
            settings.endpoint_name,
            settings.variant_name,
            settings.account_id,
            settings.region,
            server.log_location,
        )
        recorders = [self._live_recorder(member) for member in self.instances]
        for recorder in recorders:
            recorder.start()
            self._background.append(recorder)
        if settings.trace_file is not None:
            self._trace = TraceWriter(settings.trace_file)
            for member in self.instances:
                member.cache.control_observer = self._trace.write

        def observe(record: InvocationRecord) -> None:
            # A request that failed before routing reached no instance: the first one's
            # timeline counts it, as it did before there were several.
            recorders[record.routed or 0].observe(record)

        observer: Callable[[InvocationRecord], None] = observe
        if self._trace is not None:
            observer = _both(self._trace.write, observe)
        self._gateway = Gateway(
            service=EndpointService(
                identity,
                cache,
                client,
                self.metrics,
                ServiceOptions.from_settings(settings),
                observer,
                fleet,
            ),
            admin=AdminViews(
                settings=settings,
                cache=cache,
                store=store,
                metrics=self.metrics,
                server=server,
                probes=probes,
                s3_endpoint_url=self.s3_endpoint_url,
                model_data_url=self.model_data.url(),
                cache_dir=root,
                runtime_running=lambda: supervisor.running,
                instances=[
                    InstanceView(m.index, m.cache, m.server, m.probes, m.supervisor_running)
                    for m in self.instances
                ],
            ),
            live=self._live_views(recorders, StoreListing(store)),
        )

    def _live_views(self, recorders: list[LiveRecorder], listing: StoreListing) -> list[LiveViews]:
        """The live page's data, one per instance; they share one listing of the store."""
        return [
            LiveViews(
                endpoint_name=self.settings.endpoint_name,
                runtime=self.settings.runtime,
                cache=member.cache,
                recorder=recorder,
                listing=listing,
                open_port=member.open_port,
                runtime_running=member.supervisor_running,
                instance=member.index,
                instances=len(self.instances),
            )
            for member, recorder in zip(self.instances, recorders, strict=True)
        ]

    async def _start_instance(self, index: int, root: Path, store: ModelStore) -> None:
        """One instance: its model server, container client, cache and supervisor. With one
        instance the cache folder is the root itself (as before instances existed); with
        several, each has `instance-<i>` under it."""
        settings = self.settings
        if settings.instance_count == 1:
            cache_dir = root
        else:
            cache_dir = root / f"instance-{index}"
            await asyncio.to_thread(_fresh_folder, cache_dir)
        server = build_model_server(
            settings, cache_dir, cache_dir / ".runtime", progress=self.progress
        )
        member = EmulatorInstance(index, cache_dir, server)
        self.instances.append(member)
        name = server_title(settings)
        if settings.instance_count > 1:
            name = f"{name} instance {index}"
        self.progress(f"starting {name} ({settings.runtime} runtime)")
        await server.start()
        member.client = client = build_container_client(
            settings, server, self.metrics.count_unload_hold
        )
        if client.model_list_mutex is not None and index == 0:
            self.progress(
                f"imitating Triton {settings.triton_version}'s SageMaker front end: every "
                "invocation waits while a model unloads (unload_blocks_invokes)"
            )
        member.probes = probes = await asyncio.to_thread(ServerProbes, server)
        member.cache = cache = ModelCache(
            store=store,
            client=client,
            model_url=server.model_url,
            cache_dir=cache_dir,
            budgets=Budgets(
                max_loaded_models=settings.max_loaded_models,
                host_memory_bytes=settings.host_memory_budget(),
                disk_bytes=settings.disk_budget(),
                max_archive_bytes=settings.max_archive_bytes,
                gpu_memory_bytes=settings.gpu_memory_budget(),
            ),
            metrics=self.metrics,
            memory_probe=self._host_memory_probe(probes, index),
            ready_timeout_s=settings.model_ready_timeout_s,
            load_timeout_s=settings.model_load_timeout_s,
            cache_enabled=settings.cache_enabled,
            gpu_memory_probe=probes.gpu_memory if probes.measures_gpu else None,
            model_memory_probe=probes.model_memory,
            max_parallel_downloads=settings.parallel_downloads(),
            max_parallel_loads=settings.parallel_loads(),
            instance=index,
            serial_model_control=client.dialect.serial_model_control,
        )
        await cache.measure_base()

        def runtime_up(url: str) -> None:
            client.rebase(url)
            cache.runtime_up()

        def restart_attempt() -> None:
            member.restart_attempts += 1
            self.metrics.runtime_restarts.inc()

        member.supervisor = supervisor = RuntimeSupervisor(
            server,
            on_down=cache.runtime_down,
            on_up=runtime_up,
            on_restart_attempt=restart_attempt,
        )
        supervisor.start()

    def _live_recorder(self, member: EmulatorInstance) -> LiveRecorder:
        """The live page's timeline of one instance: it samples memory every period, in a
        thread."""

        def gpu_memory() -> list[int]:
            return [gpu.memory_used_bytes for gpu in visible_gpus()]

        return LiveRecorder(
            member.cache,
            restarts=lambda: float(member.restart_attempts),
            runtime_running=member.supervisor_running,
            host_memory=member.probes.host_memory,
            gpu_memory=gpu_memory if member.probes.measures_gpu else None,
        )

    def _host_memory_probe(self, probes: ServerProbes, index: int) -> Callable[[], int]:
        def measure() -> int:
            measured = probes.host_memory()
            self.metrics.set_host_memory(index, measured)
            return measured

        return measure

    async def stop(self) -> None:
        self._gateway = None
        for task in self._background:
            await task.stop()
        self._background = []
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        instances, self.instances = self.instances, []
        self._supervisor = self._cache = self._client = self.server = None
        # Every instance is stopped whatever another one's stop raised; the first error is
        # raised once all are down.
        failures: list[BaseException] = []
        for stage in (_stop_supervisor, _close_cache, _close_client, _stop_server):
            for outcome in await asyncio.gather(
                *(stage(member) for member in instances), return_exceptions=True
            ):
                if isinstance(outcome, BaseException):
                    failures.append(outcome)
        if self._embedded_s3 is not None:
            await self._embedded_s3.stop()
            self._embedded_s3 = None
        await asyncio.to_thread(self.cache_folder.close)
        if failures:
            raise failures[0]

    @property
    def cache(self) -> ModelCache:
        if self._cache is None:
            raise RuntimeError("the emulator is not started")
        return self._cache

    @property
    def supervisor(self) -> RuntimeSupervisor:
        """The first instance's: whether its model server is up, and how often it died."""
        if self._supervisor is None:
            raise RuntimeError("the emulator is not started")
        return self._supervisor

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise RuntimeError("the emulator is not started")
        return self._gateway

    @property
    def cache_dir(self) -> Path:
        return self.cache_folder.path


@dataclass
class EmulatorInstance:
    """One instance's parts, filled in as they start (so a failed start stops what started)."""

    index: int
    cache_dir: Path
    server: ModelServer
    client: ContainerClient = field(default=None)  # type: ignore[assignment]
    probes: ServerProbes = field(default=None)  # type: ignore[assignment]
    cache: ModelCache = field(default=None)  # type: ignore[assignment]
    supervisor: RuntimeSupervisor = field(default=None)  # type: ignore[assignment]
    restart_attempts: int = 0
    """How many times its supervisor tried to restart its model server."""

    def supervisor_running(self) -> bool:
        return self.supervisor is not None and self.supervisor.running

    def open_port(self) -> int | None:
        return self.server.open_port


async def _stop_supervisor(member: EmulatorInstance) -> None:
    if member.supervisor is not None:
        await member.supervisor.stop()


async def _close_cache(member: EmulatorInstance) -> None:
    if member.cache is not None:
        await member.cache.close()


async def _close_client(member: EmulatorInstance) -> None:
    if member.client is not None:
        await member.client.aclose()


async def _stop_server(member: EmulatorInstance) -> None:
    await member.server.stop()


def _fresh_folder(path: Path) -> None:
    """An instance's cache folder (the root's `clear_stale` removed an earlier run's)."""
    path.mkdir(parents=True, exist_ok=True)


def _both(
    first: Callable[[InvocationRecord], None], second: Callable[[InvocationRecord], None]
) -> Callable[[InvocationRecord], None]:
    def observe(record: InvocationRecord) -> None:
        first(record)
        second(record)

    return observe
