"""An emulator serving HTTP from a background thread: for tests, the demo and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import uvloop

from mme_local.clients import local_runtime_client
from mme_local.emulator import Emulator
from mme_local.metrics_reader import read_samples
from mme_local.runtime.base import free_port
from mme_local.serving import EmulatorServer
from mme_local.settings import EmulatorSettings
from mme_local.store.s3url import S3Prefix
from mme_local.store.source import s3_client


class RunningEmulator:
    """Started by the constructor, stopped by `stop()` or leaving the `with` block."""

    def __init__(self, settings: EmulatorSettings, startup_timeout_s: float = 600.0) -> None:
        if settings.port == 0:
            settings = settings.model_copy(update={"port": free_port(settings.host)})
        self.settings = settings
        self._server = EmulatorServer(settings, on_ready=self._mark_ready)
        self.emulator = self._server.emulator
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mme-local-emulator", daemon=True)
        self._thread.start()
        while not self._ready.wait(0.1):
            if not self._thread.is_alive():
                raise RuntimeError(
                    f"the emulator failed to start: {self._failure!r}"
                ) from self._failure
            startup_timeout_s -= 0.1
            if startup_timeout_s <= 0:
                self.stop()
                raise RuntimeError("the emulator did not start in time")
        # The emulator is up; wait for the socket to accept connections too.
        while not self._server.serving and self._thread.is_alive():
            self._ready.wait(0.01)
        if not self._thread.is_alive():
            raise RuntimeError(f"the gateway failed to start: {self._failure!r}")

    def _mark_ready(self, emulator: Emulator) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready.set()

    def _run(self) -> None:
        try:
            uvloop.run(self._server.serve())
        except BaseException as error:  # reported by the constructor
            self._failure = error

    def settle(self, timeout_s: float = 120.0) -> None:
        """Block until no instance's cache has a transition in flight (e.g. an eviction's
        unload)."""
        assert self._loop is not None

        async def settle_all() -> None:
            for member in self.emulator.instances:
                await member.cache.settle()

        asyncio.run_coroutine_threadsafe(settle_all(), self._loop).result(timeout_s)

    def check_artifacts(self, timeout_s: float = 60.0) -> None:
        """Run the periodic changed-artifact check once, now."""
        assert self._loop is not None and self.emulator.artifact_watcher is not None
        check = self.emulator.artifact_watcher.check()
        asyncio.run_coroutine_threadsafe(check, self._loop).result(timeout_s)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def endpoint_name(self) -> str:
        return self.settings.endpoint_name

    @property
    def s3_endpoint_url(self) -> str | None:
        return self.emulator.s3_endpoint_url

    @property
    def model_data(self) -> S3Prefix:
        return self.emulator.model_data

    def s3_client(self) -> Any:
        return s3_client(self.s3_endpoint_url, self.settings.region)

    def runtime_client(self, **config: Any) -> Any:
        """A boto3 sagemaker-runtime client pointed at this endpoint."""
        return local_runtime_client(self.url, self.settings.region, **config)

    def metrics(self) -> dict[str, float]:
        """Prometheus samples by name (with labels in braces where there are any)."""
        return read_samples(self.emulator.metrics.render().decode())

    def stop(self) -> None:
        self._server.request_exit()
        self._thread.join(timeout=60)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(settings: EmulatorSettings) -> RunningEmulator:
    return RunningEmulator(settings)
