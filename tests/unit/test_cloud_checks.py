"""Checks before any AWS call: GPU and image pairings, memory fit; and the patient smoke call."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cloud.compat import gpu_check
from cloud.errors import AwsCallFailed, InvalidDeployInput
from cloud.invoke import smoke_call
from cloud.plan import DeployRequest, build_plan
from cloud.smoke import invoke_when_ready
from mme_local.instances import INSTANCE_TYPES, instance_type
from tests.unit.test_cloud import (
    PREFIX_URL,
    ROLE,
    artifacts_dir,
    deploy_args,
    forbid_aws,
    run_cli,
)


def test_gpu_families_are_the_ones_aws_lists_for_gpu_mme() -> None:
    assert sorted({t.family for t in INSTANCE_TYPES.values()}) == [
        "ml.g4dn",
        "ml.g5",
        "ml.p2",
        "ml.p3",
    ]


def test_p2_is_refused_before_any_call_with_the_nearest_that_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    result = run_cli(deploy_args("--dry-run", instance_type="ml.p2.xlarge"))
    assert isinstance(result.exception, InvalidDeployInput)
    message = str(result.exception)
    assert message.startswith("ml.p2.xlarge has an NVIDIA K80 (compute capability 3.7)")
    assert message.endswith("use ml.g4dn.xlarge (NVIDIA T4) with --triton-version 24.09")


@pytest.mark.parametrize(("version", "added"), [("24.09", ()), ("25.04", ("7.0",))])
def test_p3_gets_the_compute_capability_flag_on_new_images(
    version: str, added: tuple[str, ...]
) -> None:
    verdict, arguments = gpu_check(instance_type("ml.p3.2xlarge"), version)
    assert arguments == tuple(f"--min-supported-compute-capability={cc}" for cc in added)
    assert verdict.outcome == ("added" if added else "ok")


def test_dry_run_shows_the_environment_and_every_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    args = deploy_args("--dry-run", "--triton-version", "25.04", instance_type="ml.p3.2xlarge")
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("- gpu: added: Triton 25.04 ignores GPUs below compute capability")
    assert lines[2].startswith("- triton flags: ok: same flags and ping mode live as locally")
    environment = json.loads(lines[4].removeprefix("- "))
    assert environment["SAGEMAKER_TRITON_ADDITIONAL_ARGS"] == (
        "--min-supported-compute-capability=7.0"
    )
    assert environment["SAGEMAKER_TRITON_PING_MODE"] == "live"


def test_footprint_beyond_gpu_memory_is_a_warning(tmp_path: Path) -> None:
    folder = artifacts_dir(tmp_path)
    request = DeployRequest("demo-mme", ROLE, PREFIX_URL, "ml.g4dn.xlarge", "us-east-1")
    too_big = build_plan(
        DeployRequest(**{**request.__dict__, "footprint_bytes": 16 * 1024**3})
    ).verdicts[-1]
    assert (too_big.check, too_big.outcome) == ("memory", "warning")
    assert "16,384 MiB exceeds the 15,360 MiB usable on ml.g4dn.xlarge" in too_big.detail
    bound = build_plan(DeployRequest(**{**request.__dict__, "artifacts_dir": folder})).verdicts[-1]
    assert bound.outcome == "ok"
    assert "extracted size (lower bound)" in bound.detail


class FakeRuntime:
    def __init__(self, not_ready: int) -> None:
        self.not_ready = not_ready
        self.calls = 0

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.not_ready:
            error = {"Error": {"Code": "ModelNotReadyException", "Message": "loading"}}
            raise ClientError(error, "InvokeEndpoint")  # type: ignore[arg-type]
        return {"Body": io.BytesIO(b'{"outputs": []}')}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_smoke_call_waits_out_a_cold_start_with_backoff() -> None:
    clock = FakeClock()
    said: list[str] = []
    runtime = FakeRuntime(not_ready=6)
    answer = invoke_when_ready(
        runtime,
        smoke_call("demo-mme", "m.tar.gz", b"{}"),
        said.append,
        600,
        clock.sleep,
        lambda: clock.now,
    )
    assert answer == b'{"outputs": []}'
    assert clock.sleeps == [2, 4, 8, 16, 30, 30]
    assert said[0] == "smoke test: m.tar.gz is loading (attempt 1, 0 s); retrying in 2 s"


def test_smoke_call_gives_up_at_its_bound() -> None:
    clock = FakeClock()
    with pytest.raises(AwsCallFailed, match="still loading after 60 s"):
        invoke_when_ready(
            FakeRuntime(not_ready=100),
            smoke_call("demo-mme", "m.tar.gz", b"{}"),
            budget_s=60,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert sum(clock.sleeps) <= 60
