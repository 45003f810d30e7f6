"""`mme-local teardown` as a user answers it: no, no answer at all, or yes (moto)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cloud.deploy import Deployer
from cloud.errors import AwsCallFailed
from cloud.plan import DeployRequest, build_plan
from mme_local.cli.app import app
from mme_local.cli.errors import run_app
from tests.unit.test_cloud import (
    INSTANCE,
    PREFIX_URL,
    ROLE,
    artifacts_dir,
    deploy_args,
    run_cli,
    s3_keys,
    sagemaker,
)
from tests.unit.test_cloud_teardown import clients

ARGS = ["teardown", "demo-mme", "--region", "us-east-1", "--delete-artifacts"]


def _deployed(tmp_path: Path) -> None:
    request = DeployRequest(
        "demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1", artifacts_dir=artifacts_dir(tmp_path)
    )
    plan = build_plan(request)
    assert Deployer(plan, clients(), poll_s=0).run().status == "InService"


def _teardown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str, *extra: str
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["mme-local", *ARGS, *extra])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exited:
        run_app(app)
        raise SystemExit(0)
    code = exited.value.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().out


def _nothing_deleted() -> None:
    assert len(sagemaker().list_endpoints()["Endpoints"]) == 1
    assert len(sagemaker().list_models()["Models"]) == 1
    assert len(s3_keys()) == 2


def test_answering_no_says_nothing_was_deleted(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _deployed(tmp_path)
    code, out = _teardown(monkeypatch, capsys, "n\n")
    assert code == 1
    assert "delete these 3 resource(s) and 2 object(s)?" in out
    assert out.rstrip().endswith("nothing was deleted")
    _nothing_deleted()


def test_a_closed_stdin_says_nothing_was_deleted_and_how_not_to_ask(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _deployed(tmp_path)
    code, out = _teardown(monkeypatch, capsys, "")
    assert code == 1
    assert "nothing was deleted: no answer (pass --yes to delete without asking)" in out
    _nothing_deleted()


def test_the_summary_counts_resources_and_objects_apart(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _deployed(tmp_path)
    code, out = _teardown(monkeypatch, capsys, "", "--yes")
    assert code == 0, out
    assert "deleted 3 resource(s) and 2 object(s) for demo-mme in us-east-1" in out
    assert sagemaker().list_endpoints()["Endpoints"] == []
    assert s3_keys() == []


def test_a_deploy_failing_midway_says_what_it_made_and_the_command_removes_it(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto's SageMaker refuses ml.g5.xlarge at CreateEndpointConfig: after uploads and the model.
    folder = artifacts_dir(tmp_path)
    result = run_cli(deploy_args("--artifacts", str(folder), instance_type="ml.g5.xlarge"))
    assert isinstance(result.exception, AwsCallFailed)
    lines = str(result.exception).splitlines()
    model = sagemaker().list_models()["Models"][0]["ModelName"]
    assert lines[0].startswith("sagemaker CreateEndpointConfig failed (ValidationException: ")
    assert lines[1:] == [
        "this run already did:",
        f"  uploaded 2 artifact(s) to {PREFIX_URL}",
        f"  created model {model}",
        "to finish: fix the cause and run the same deploy again (it carries on)",
        "to remove what it made: mme-local teardown demo-mme --delete-artifacts",
    ]
    command = lines[-1].split(": ", 1)[1].split()[1:]
    monkeypatch.setattr(sys, "argv", ["mme-local", *command, "--region", "us-east-1", "--yes"])
    with pytest.raises(SystemExit) as exited:
        run_app(app)
        raise SystemExit(0)
    assert exited.value.code in (0, None)
    assert "deleted 1 resource(s) and 2 object(s)" in capsys.readouterr().out
    assert sagemaker().list_models()["Models"] == []
    assert s3_keys() == []
