"""`deploy` reports every bad input at once, and says where a region can come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.errors import InvalidDeployInput
from tests.unit.test_cloud import ROLE, deploy_args, forbid_aws, run_cli


def test_every_bad_input_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        [
            "deploy",
            "--endpoint-name", "bad_name",
            "--role-arn", "not-an-arn",
            "--model-data-url", "http://x/y",
            "--instance-type", "ml.m5.xlarge",
            "--instance-count", "0",
            "--region", "Mars",
        ]
    )  # fmt: skip
    assert isinstance(result.exception, InvalidDeployInput)
    lines = str(result.exception).splitlines()
    assert lines[0] == "6 problems with the inputs:"
    for start in (
        "  --instance-type ml.m5.xlarge is not",
        "  --instance-count must be at least 1",
        "  endpoint name 'bad_name' is not valid",
        "  --role-arn 'not-an-arn' is not an IAM role ARN",
        "  --region 'Mars' is not an AWS region name",
        "  --model-data-url: 'http://x/y' is not an s3:// URL",
    ):
        assert any(line.startswith(start) for line in lines[1:]), (start, lines)


def test_missing_values_are_reported_with_the_bad_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = run_cli(["deploy", "--endpoint-name", "bad_name", "--instance-type", "ml.m5.xlarge"])
    assert isinstance(result.exception, InvalidDeployInput)
    problems = result.exception.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("--instance-type ml.m5.xlarge is not")
    assert problems[1] == "--role-arn is required (or set role_arn in [deploy] of mme.toml)"
    assert problems[2] == (
        "--model-data-url is required (or set model_data_url in [endpoint] of mme.toml)"
    )
    assert problems[3].startswith("endpoint name 'bad_name' is not valid")


def test_a_missing_region_names_the_variables_and_profiles(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    args = [a for a in deploy_args("--dry-run") if a not in ("--region", "us-east-1")]
    result = run_cli(args)
    assert isinstance(result.exception, InvalidDeployInput)
    message = str(result.exception)
    assert message.startswith("--region is required: pass --region, set AWS_REGION or ")
    assert "AWS_DEFAULT_REGION" in message and "--profile" in message and "mme.toml" in message
    assert ROLE not in message
