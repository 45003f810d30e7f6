"""`capacity profile --stack`: the empty model in each stack's layout, the other stack's
artifacts refused before anything starts, and the per-stub correction only where the cloud
has no stub (Triton's Python-based pytorch backend), never on TorchServe."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mme_local.artifacts.lint import lint_archive
from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profile import STUB_HOSTED_PLATFORMS, load_profile
from mme_local.capacity.profiler import measure_footprints, stack_refusal, write_empty_model
from mme_local.capacity.sources import Distinct
from mme_local.cli.app import app
from mme_local.cli.errors import run_app
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive
from tests.unit.capacity_support import MiB, footprint, profile

STACKS = ("triton", "torchserve")


@pytest.mark.parametrize("stack", STACKS)
def test_the_empty_model_is_a_clean_archive_of_the_stack(stack: str, tmp_path: Path) -> None:
    archive = write_empty_model(tmp_path, stack)
    assert [p for p in lint_archive(archive, stack=stack) if p.severity == "error"] == []
    (other,) = (s for s in STACKS if s != stack)
    assert stack_refusal(archive, other) is not None
    assert stack_refusal(archive, stack) is None


def test_an_artifact_of_the_other_stack_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    triton = doubler_archive(tmp_path, "doubler.tar.gz")
    refusal = stack_refusal(triton, "torchserve")
    assert refusal is not None and "\n" not in refusal
    assert "--stack triton" in refusal


def test_an_unreadable_archive_is_left_to_the_load_to_report(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a tar")
    assert stack_refusal(broken, "torchserve") is None


def test_profiling_the_other_stacks_artifact_stops_before_any_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the emulator was started")

    monkeypatch.setattr("mme_local.capacity.profiler.Emulator", no_server)
    triton = doubler_archive(tmp_path, "doubler.tar.gz")
    distinct = [Distinct("b" * 64, triton, ["doubler.tar.gz"])]
    settings = EmulatorSettings(stack="torchserve")
    with pytest.raises(CapacityError, match=r"doubler\.tar\.gz: .*--stack triton"):
        asyncio.run(measure_footprints(distinct, settings, None, lambda _: None))


@given(
    stack=st.sampled_from(STACKS),
    runtime=st.sampled_from(("embedded", "docker", "external")),
    platform=st.sampled_from((*STUB_HOSTED_PLATFORMS, "python", "torchserve", "onnxruntime")),
    host_mib=st.integers(0, 4096),
    stub_mib=st.integers(0, 4096),
    gpu_mib=st.none() | st.integers(0, 4096),
    stub_gpu_mib=st.none() | st.integers(0, 4096),
)
def test_the_stub_cost_is_subtracted_only_on_tritons_stub_hosted_path(
    stack: str,
    runtime: str,
    platform: str,
    host_mib: int,
    stub_mib: int,
    gpu_mib: int | None,
    stub_gpu_mib: int | None,
) -> None:
    measured = footprint(host_mib=host_mib, platform=platform, gpu_mib=gpu_mib)
    base = profile(measured, stub_mib=stub_mib)
    stub_gpu = None if stub_gpu_mib is None else stub_gpu_mib * MiB
    result = replace(base, stack=stack, runtime=runtime, stub_gpu_bytes=stub_gpu)
    subtracted = stack == "triton" and runtime == "embedded" and platform in STUB_HOSTED_PLATFORMS
    assert result.corrected(measured) is subtracted
    host = measured.host_memory_bytes
    expected_host = max(0, host - stub_mib * MiB) if subtracted else host
    assert result.cloud_host_bytes(measured) == expected_host
    if measured.gpu_memory_bytes is None:
        assert result.cloud_gpu_bytes(measured) == measured.extracted_bytes
    elif subtracted:
        gpu = measured.gpu_memory_bytes
        assert result.cloud_gpu_bytes(measured) == max(0, gpu - (stub_gpu or 0))
    else:
        assert result.cloud_gpu_bytes(measured) == measured.gpu_memory_bytes


def test_a_torchserve_profile_round_trips_and_an_older_file_reads_as_triton(
    tmp_path: Path,
) -> None:
    measured = profile(footprint(platform="torchserve"), stub_mib=250)
    torchserve = replace(measured, stack="torchserve")
    torchserve.save(tmp_path / "ts.json")
    assert load_profile(tmp_path / "ts.json") == torchserve
    older = asdict(profile(footprint(platform="pytorch_libtorch"), stub_mib=250))
    del older["stack"]  # written before profiles named their stack
    (tmp_path / "old.json").write_text(json.dumps(older))
    loaded = load_profile(tmp_path / "old.json")
    assert loaded.stack == "triton" and loaded.corrected(loaded.artifacts[0])


def test_the_cli_refuses_torchserve_off_the_embedded_runtime_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["capacity", "profile", str(tmp_path), "--stack", "torchserve", "--runtime", "docker"]
    monkeypatch.setattr(sys, "argv", ["mme-local", *args])
    with pytest.raises(SystemExit) as exit_info:
        run_app(app)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "embedded only" in error
