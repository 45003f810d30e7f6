"""An emulator serving HTTP from a background thread: for tests, the demo and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import uvicorn

from mme_local.emulator import Emulator, build_app, uvicorn_config
from mme_local.runtime.base import free_port
from mme_local.settings import EmulatorSettings
from mme_local.store.s3url import S3Prefix
from mme_local.store.source import s3_client


class RunningEmulator:
    """Started by the constructor, stopped by `stop()` or leaving the `with` block."""

    def __init__(self, settings: EmulatorSettings, startup_timeout_s: float = 600.0) -> None:
        if settings.port == 0:
            settings.port = free_port(settings.host)
        self.settings = settings
        self.emulator = Emulator(settings)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._server = uvicorn.Server(
            uvicorn_config(build_app(self.emulator, self._mark_ready), settings.host, settings.port)
        )
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
        # The lifespan has finished; wait for the socket to accept connections too.
        while not self._server.started and self._thread.is_alive():
            self._ready.wait(0.01)

    def _mark_ready(self, emulator: Emulator) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready.set()

    def settle(self, timeout_s: float = 120.0) -> None:
        """Block until the cache has no transition in flight (e.g. an eviction's unload)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.emulator.cache.settle(), self._loop).result(timeout_s)

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as error:  # reported by the constructor
            self._failure = error

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

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
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {"read_timeout": 70, "retries": {"max_attempts": 1}}
        options.update(config)
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name=self.settings.region,
            aws_access_key_id="mme-local",
            aws_secret_access_key="mme-local",
            config=Config(**options),
        )

    def metrics(self) -> dict[str, float]:
        """Prometheus samples by name (with labels in braces where there are any)."""
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[str, float] = {}
        text = self.emulator.metrics_text().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(settings: EmulatorSettings) -> RunningEmulator:
    return RunningEmulator(settings)
