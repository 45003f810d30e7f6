"""`deploy --stack torchserve`: the PyTorch inference DLC from the SDK's image_uris, the
Environment the toolkit reads, the same checks, dry-run and moto deploy as the Triton stack,
and the local TorchServe configuration equal to the cloud's from one source."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from cloud.errors import InvalidDeployInput
from cloud.plan import DeployRequest, build_plan
from cloud.torchserve import config_differences, pytorch_image_uri
from mme_local.runtime.torchserve_config import (
    LOCAL_ONLY,
    TorchServeSettings,
    sagemaker_environment,
)
from tests.unit.test_cloud import (
    BUCKET,
    INSTANCE,
    PREFIX_URL,
    ROLE,
    artifacts_dir,
    deploy_args,
    forbid_aws,
    run_cli,
    s3_keys,
    sagemaker,
)
from tests.unit.test_lint import make_archive
from tests.unit.test_torchserve_artifacts import torchserve_entries

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-gpu-py312"
README = Path(__file__).resolve().parents[2] / "README.md"
REQUEST = b'{"inputs": []}\n'


def torchserve_artifacts(root: Path) -> Path:
    folder = root / "ts-artifacts"
    folder.mkdir()
    for index in range(2):
        entries = torchserve_entries(**{"model__pt": f"weights {index}".encode()})
        make_archive(folder / f"model-{index}.tar.gz", entries)
    (folder / "request.json").write_bytes(REQUEST)
    return folder


def test_the_image_is_the_pytorch_inference_dlc() -> None:
    assert pytorch_image_uri("us-east-1", "2.6", INSTANCE) == IMAGE
    with pytest.raises(InvalidDeployInput, match=r"no SageMaker PyTorch inference image .*'0\.1'"):
        pytorch_image_uri("us-east-1", "0.1", INSTANCE)


def test_a_gpu_cuda_12_cannot_use_is_refused_naming_a_usable_type() -> None:
    request = DeployRequest(
        "demo-mme", ROLE, PREFIX_URL, "ml.p2.xlarge", "us-east-1", stack="torchserve"
    )
    with pytest.raises(InvalidDeployInput, match=r"CUDA 12 PyTorch 2\.6 image cannot use"):
        build_plan(request)


def test_the_plan_sends_the_toolkit_environment_and_says_the_config_agrees() -> None:
    settings = TorchServeSettings(workers_per_model=2, response_timeout_s=90)
    request = DeployRequest(
        "demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1", stack="torchserve",
        torchserve=settings,
    )  # fmt: skip
    plan = build_plan(request)
    container = plan.create_model().params["PrimaryContainer"]
    assert container["Image"] == IMAGE
    assert container["Environment"] == sagemaker_environment(settings)
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2"
    verdicts = {v.check: v for v in plan.verdicts}
    assert verdicts["torchserve config"].outcome == "ok", verdicts
    assert verdicts["gpu"].outcome == "ok"


def test_local_and_cloud_differ_only_where_the_readme_says_why() -> None:
    differing = config_differences(sagemaker_environment(TorchServeSettings()))
    assert differing and set(differing) <= set(LOCAL_ONLY)
    text = README.read_text()
    for key in LOCAL_ONLY:
        assert f"`{key}`" in text


def test_archives_of_the_other_stack_stop_the_deploy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    result = run_cli(
        deploy_args("--stack", "torchserve", "--artifacts", str(artifacts_dir(tmp_path)))
    )
    assert isinstance(result.exception, InvalidDeployInput)
    assert "Triton archive (config.pbtxt) on a TorchServe endpoint" in str(result.exception)
    triton = run_cli(deploy_args("--artifacts", str(torchserve_artifacts(tmp_path))))
    assert "TorchServe archive (MAR-INF/MANIFEST.json) on a Triton endpoint" in str(
        triton.exception
    )


def test_dry_run_uses_the_written_request_for_the_smoke_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    folder = torchserve_artifacts(tmp_path)
    result = run_cli(
        deploy_args(
            "--stack", "torchserve", "--artifacts", str(folder), "--dry-run",
            "--smoke-target", "model-1.tar.gz",
        )
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    calls = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    create_model = json.loads(next(c for c in calls if "CreateModel" in c).split(" ", 2)[2])
    assert create_model["PrimaryContainer"]["Image"] == IMAGE
    assert create_model["PrimaryContainer"]["Environment"] == sagemaker_environment(
        TorchServeSettings()
    )
    smoke = json.loads(calls[-1].split(" ", 2)[2])
    assert smoke["TargetModel"] == "model-1.tar.gz"
    assert smoke["Body"] == f"<{len(REQUEST)} bytes>"


def test_deploy_rerun_and_teardown_on_moto(aws: None, tmp_path: Path) -> None:
    folder = torchserve_artifacts(tmp_path)
    args = deploy_args("--stack", "torchserve", "--artifacts", str(folder))
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    client = sagemaker()
    [model] = client.list_models()["Models"]
    container = client.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["Mode"] == "MultiModel"
    assert container["Environment"]["SAGEMAKER_MULTI_MODEL"] == "true"
    assert client.describe_endpoint(EndpointName="demo-mme")["EndpointStatus"] == "InService"
    assert s3_keys() == ["models/model-0.tar.gz", "models/model-1.tar.gz"]
    assert (
        boto3.client("s3").get_object(Bucket=BUCKET, Key="models/model-1.tar.gz")["Body"].read()
        == (folder / "model-1.tar.gz").read_bytes()
    )

    again = run_cli(args)
    assert again.exit_code == 0 and "nothing changed" in again.output
    gone = run_cli(["teardown", "demo-mme", "--region", "us-east-1", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert client.list_endpoints()["Endpoints"] == []
