"""pytest plugin: a local multi-model endpoint for the whole test session, as `mme_endpoint`.

pytest loads this module into every run in an environment that has mme-local installed, so
it imports nothing heavy itself; the emulator starts only when a test asks for the fixture.

Override `mme_endpoint_settings` in a conftest.py to change the endpoint (capacity, name...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mme_local.background import RunningEmulator
    from mme_local.settings import EmulatorSettings


class MmeEndpoint:
    """What a test needs from the endpoint: a boto3 client, its name, and a way to add models."""

    def __init__(self, running: RunningEmulator) -> None:
        self.running = running
        self.client: Any = running.runtime_client()
        """A boto3 `sagemaker-runtime` client pointed at the endpoint."""
        self._s3: Any = None

    @property
    def endpoint_name(self) -> str:
        return self.running.endpoint_name

    @property
    def url(self) -> str:
        return self.running.url

    def add_model(self, path: str | Path, target_model: str | None = None) -> str:
        """Upload a model.tar.gz under the endpoint's prefix; return the TargetModel to invoke.

        The TargetModel defaults to the file's name. As on SageMaker, publish a changed model
        under a new name: a model already loaded keeps serving the old content.
        """
        from mme_local.store.publish import publish

        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"{source} is not a file")
        target = target_model or source.name
        if self._s3 is None:
            self._s3 = self.running.s3_client()
        publish(self._s3, self.running.model_data, [(source, target)])
        return target

    def metrics(self) -> dict[str, float]:
        """The endpoint's Prometheus samples (CloudWatch names with an `mme_` prefix)."""
        return self.running.metrics()


@pytest.fixture(scope="session")
def mme_endpoint_settings(tmp_path_factory: pytest.TempPathFactory) -> EmulatorSettings:
    """Settings of the session's endpoint: a free port, a cache folder removed after the run,
    and whatever MME_LOCAL_* environment variables say about the rest."""
    import os

    from mme_local.config_file import load_settings
    from mme_local.settings import EmulatorSettings

    flags = {"port": 0, "cache_dir": tmp_path_factory.mktemp("mme-local-cache")}
    return load_settings(EmulatorSettings, flags, env=os.environ, read_file=False)


@pytest.fixture(scope="session")
def mme_endpoint(mme_endpoint_settings: EmulatorSettings) -> Iterator[MmeEndpoint]:
    """A running endpoint (embedded S3, Triton and gateway) shared by the whole session."""
    from mme_local.background import run_in_thread

    with run_in_thread(mme_endpoint_settings) as running:
        yield MmeEndpoint(running)
