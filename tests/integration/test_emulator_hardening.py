"""Per-model memory and changed artifacts on the real Triton, moto server and boto3."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mme_local.background import run_in_thread
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body, kserve_output

pytestmark = pytest.mark.integration


def _invoke(client: object, target: str) -> list[float]:
    response = client.invoke_endpoint(  # type: ignore[attr-defined]
        EndpointName="local-mme",
        TargetModel=target,
        Body=kserve_body([1.0]),
        ContentType="application/octet-stream",
    )
    return kserve_output(response["Body"].read())


def test_a_model_reloaded_while_another_unloads_has_its_own_memory(tmp_path: Path) -> None:
    """Count-budget unloads run beside the next load; a total-before/after delta then shows
    nothing for the reloaded model. Each stub's own memory is measured instead."""
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache", max_loaded_models=1)
    with run_in_thread(settings) as running:
        s3, prefix = running.s3_client(), running.model_data
        for name in ("a", "b"):
            archive = doubler_archive(tmp_path, f"{name}.tar.gz")
            s3.upload_file(str(archive), prefix.bucket, prefix.prefix + archive.name)
        client = running.runtime_client()
        for target in ("a.tar.gz", "b.tar.gz", "a.tar.gz", "b.tar.gz"):
            assert _invoke(client, target) == [2.0]
        running.settle()
        rows = httpx.get(f"{running.url}/_mme/models", timeout=30).json()
        loaded = [row for row in rows if row["state"] == "loaded"]
        assert [row["target_model"] for row in loaded] == ["b.tar.gz"]
        # A Python-backend stub holds tens of MB; all four loads were measured per model.
        assert loaded[0]["memory_bytes"] > 10 * 2**20
        assert all(e.memory_measured for e in running.emulator.cache.entries())


def test_a_changed_object_keeps_serving_old_bytes_and_is_flagged(tmp_path: Path) -> None:
    settings = EmulatorSettings(port=0, cache_dir=tmp_path / "cache")
    with run_in_thread(settings) as running:
        s3, prefix = running.s3_client(), running.model_data
        first = doubler_archive(tmp_path / "v1", "m.tar.gz", factor=2)
        s3.upload_file(str(first), prefix.bucket, prefix.prefix + "m.tar.gz")
        client = running.runtime_client()
        assert _invoke(client, "m.tar.gz") == [2.0]

        second = doubler_archive(tmp_path / "v2", "m.tar.gz", factor=3)
        s3.upload_file(str(second), prefix.bucket, prefix.prefix + "m.tar.gz")
        rows = httpx.get(f"{running.url}/_mme/models", timeout=30).json()
        assert [row["artifact_changed"] for row in rows] == [True]
        # The view compares without changing anything: the cache is flagged, and the change
        # counted, by the periodic check alone.
        (entry,) = running.emulator.cache.entries()
        assert not entry.artifact_changed
        assert running.metrics().get("mme_model_artifact_changes_total", 0) == 0
        assert _invoke(client, "m.tar.gz") == [2.0], "the loaded bytes keep serving"
        running.check_artifacts()
        assert entry.artifact_changed
        assert running.metrics()["mme_model_artifact_changes_total"] == 1
