"""The deployer against moto in-process: checks, image URIs, dry-run, deploy and teardown."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from cloud.aws import Clients
from cloud.checks import check_instance_type
from cloud.deploy import Deployer
from cloud.errors import AwsCallFailed, InvalidDeployInput
from cloud.image import triton_image_uri
from cloud.invoke import runtime_client, zeros_request
from cloud.plan import DeployRequest, build_plan
from cloud.teardown import teardown
from mme_local.cli.app import app
from mme_local.config_file import SettingsError

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "mme-artifacts"
PREFIX_URL = f"s3://{BUCKET}/models/"
# moto's SageMaker only knows older instance types; g4dn is a real GPU MME type it accepts.
INSTANCE = "ml.g4dn.xlarge"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tritonserver:24.09-py3"
CONFIG = b"""
platform: "pytorch_libtorch"
max_batch_size: 4
input [ { name: "INPUT__0" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""


def write_artifact(path: Path, model_bytes: bytes = b"torchscript") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in (("bert/config.pbtxt", CONFIG), ("bert/1/model.pt", model_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def artifacts_dir(root: Path) -> Path:
    folder = root / "artifacts"
    folder.mkdir()
    write_artifact(folder / "model-0.tar.gz", b"zero")
    write_artifact(folder / "model-1.tar.gz", b"one")
    return folder


def deploy_args(*extra: str, instance_type: str = INSTANCE) -> list[str]:
    return [
        "deploy",
        "--endpoint-name",
        "demo-mme",
        "--role-arn",
        ROLE,
        "--model-data-url",
        PREFIX_URL,
        "--instance-type",
        instance_type,
        "--region",
        "us-east-1",
        *extra,
    ]


def forbid_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere, and any attempt to build a client or call AWS fails the test."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an AWS client was created or called")

    monkeypatch.setattr("boto3.session.Session.client", refuse)
    monkeypatch.setattr("botocore.client.BaseClient._make_api_call", refuse)


def run_cli(args: list[str]) -> Result:
    return CliRunner().invoke(app, args)


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name="us-east-1")


def s3_keys() -> list[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.mark.parametrize("instance_type", ["ml.m5.xlarge", "ml.g5.12xlarge", "ml.p3.8xlarge"])
def test_instance_type_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, instance_type: str
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    result = run_cli(deploy_args(instance_type=instance_type))
    assert isinstance(result.exception, InvalidDeployInput)
    message = str(result.exception)
    assert message.startswith(f"--instance-type {instance_type} is not")
    assert "ml.g4dn.{xlarge,2xlarge,4xlarge,8xlarge,16xlarge}" in message
    assert "ml.g5.{xlarge,2xlarge,4xlarge,8xlarge,16xlarge}" in message


def test_single_gpu_types_are_accepted() -> None:
    for instance_type in ("ml.g5.xlarge", "ml.g4dn.16xlarge", "ml.p3.2xlarge"):
        check_instance_type(instance_type)


@pytest.mark.parametrize(
    ("region", "account"),
    [("us-east-1", "763104351884"), ("eu-west-1", "763104351884"), ("af-south-1", "626614931356")],
)
def test_image_uri_comes_from_the_sdk(region: str, account: str) -> None:
    expected = f"{account}.dkr.ecr.{region}.amazonaws.com/sagemaker-tritonserver:24.09-py3"
    assert triton_image_uri(region, "24.09", "ml.g5.xlarge") == expected


def test_unknown_triton_version_is_refused() -> None:
    with pytest.raises(InvalidDeployInput, match=r"no SageMaker Triton image for version '21\.01'"):
        triton_image_uri("us-east-1", "21.01", "ml.g5.xlarge")


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--role-arn", "not-an-arn", "--role-arn 'not-an-arn' is not an IAM role ARN"),
        ("--endpoint-name", "bad_name", "endpoint name 'bad_name' is not valid"),
        ("--model-data-url", "http://x/y", "--model-data-url: 'http://x/y' is not an s3:// URL"),
        ("--model-cache", "Sometimes", "--model-cache must be Enabled or Disabled"),
        ("--instance-count", "0", "--instance-count must be at least 1"),
    ],
)
def test_bad_inputs_fail_before_any_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flag: str, value: str, expected: str
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    result = run_cli([*deploy_args(), flag, value])
    assert isinstance(result.exception, InvalidDeployInput)
    assert str(result.exception).startswith(expected)


def test_artifact_failing_lint_stops_the_deploy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    folder = artifacts_dir(tmp_path)
    (folder / "broken.tar.gz").write_bytes(b"plain text")
    result = run_cli(deploy_args("--artifacts", str(folder)))
    assert isinstance(result.exception, InvalidDeployInput)
    message = str(result.exception)
    assert message.startswith("1 artifact(s) fail lint, first ")
    assert "broken.tar.gz: error: not a gzip archive" in message


def test_dry_run_needs_no_credentials_and_makes_no_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    folder = artifacts_dir(tmp_path)
    args = deploy_args("--artifacts", str(folder), "--dry-run", "--smoke-target", "model-1.tar.gz")
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    calls = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert [" ".join(c.split(" ")[:2]) for c in calls] == [
        "s3 HeadBucket",
        "s3 HeadObject",
        "s3 PutObject",
        "s3 HeadObject",
        "s3 PutObject",
        "sagemaker DescribeModel",
        "sagemaker CreateModel",
        "sagemaker DescribeEndpointConfig",
        "sagemaker CreateEndpointConfig",
        "sagemaker DescribeEndpoint",
        "sagemaker CreateEndpoint",
        "sagemaker DescribeEndpoint",
        "sagemaker-runtime InvokeEndpoint",
    ]
    create_model = json.loads(calls[6].split(" ", 2)[2])
    assert create_model["PrimaryContainer"] == {
        "Image": IMAGE,
        "ModelDataUrl": PREFIX_URL,
        "Mode": "MultiModel",
        "MultiModelConfig": {"ModelCacheSetting": "Enabled"},
        "Environment": {
            "SAGEMAKER_MULTI_MODEL": "true",
            "SAGEMAKER_TRITON_PING_MODE": "live",
            "SAGEMAKER_TRITON_ALLOW_GRPC": "false",
            "SAGEMAKER_TRITON_ALLOW_METRICS": "false",
            "SAGEMAKER_TRITON_THREAD_COUNT": "8",
            "SAGEMAKER_TRITON_LOG_VERBOSE": "0",
            "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE": "16777216",
            "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE": "1048576",
        },
    }


def test_deploy_rerun_and_teardown(aws: None, tmp_path: Path) -> None:
    folder = artifacts_dir(tmp_path)
    result = run_cli(deploy_args("--artifacts", str(folder)))
    assert result.exit_code == 0, result.output
    assert "runtime.invoke_endpoint(" in result.output

    client = sagemaker()
    models = client.list_models()["Models"]
    assert len(models) == 1
    model = client.describe_model(ModelName=models[0]["ModelName"])
    assert model["PrimaryContainer"]["Mode"] == "MultiModel"
    assert model["PrimaryContainer"]["ModelDataUrl"] == PREFIX_URL
    assert model["PrimaryContainer"]["Image"] == IMAGE
    configs = client.list_endpoint_configs()["EndpointConfigs"]
    assert len(configs) == 1
    endpoint = client.describe_endpoint(EndpointName="demo-mme")
    endpoint.pop("ResponseMetadata")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == configs[0]["EndpointConfigName"]
    assert s3_keys() == ["models/model-0.tar.gz", "models/model-1.tar.gz"]
    uploaded = boto3.client("s3").get_object(Bucket=BUCKET, Key="models/model-0.tar.gz")
    assert uploaded["Body"].read() == (folder / "model-0.tar.gz").read_bytes()
    first_upload = uploaded["LastModified"]

    again = run_cli(deploy_args("--artifacts", str(folder)))
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert client.list_models()["Models"] == models
    assert client.list_endpoint_configs()["EndpointConfigs"] == configs
    assert client.describe_endpoint(EndpointName="demo-mme") | {"ResponseMetadata": 0} == (
        endpoint | {"ResponseMetadata": 0}
    )
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key="models/model-0.tar.gz")
    assert head["LastModified"] == first_upload

    gone = run_cli(["teardown", "demo-mme", "--region", "us-east-1", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert "deleted 3 resource(s) for demo-mme" in gone.output
    assert client.list_models()["Models"] == []
    assert client.list_endpoint_configs()["EndpointConfigs"] == []
    assert client.list_endpoints()["Endpoints"] == []
    assert s3_keys() == ["models/model-0.tar.gz", "models/model-1.tar.gz"]

    nothing = run_cli(["teardown", "demo-mme", "--region", "us-east-1"])
    assert nothing.exit_code == 0
    assert "nothing named demo-mme to delete" in nothing.output


def test_teardown_deletes_artifacts_when_asked(aws: None, tmp_path: Path) -> None:
    request = DeployRequest(
        "demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1", artifacts_dir=artifacts_dir(tmp_path)
    )
    clients = Clients.for_session(boto3.Session(region_name="us-east-1"))
    outcome = Deployer(build_plan(request), clients, poll_s=0).run()
    assert outcome.status == "InService"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/keep.txt", Body=b"x")
    report = teardown(clients, "demo-mme", delete_artifacts=True)
    assert report.deleted[-1] == f"2 artifact object(s) under {PREFIX_URL}"
    assert s3_keys() == ["elsewhere/keep.txt"]


def test_smoke_target_invokes_the_endpoint(aws: None, tmp_path: Path) -> None:
    folder = artifacts_dir(tmp_path)
    result = run_cli(deploy_args("--artifacts", str(folder), "--smoke-target", "model-1.tar.gz"))
    assert result.exit_code == 0, result.output
    assert "smoke test: model-1.tar.gz answered" in result.output
    assert 'TargetModel="model-1.tar.gz"' in result.output


def test_mme_toml_feeds_deploy_and_flags_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    artifacts_dir(tmp_path)
    (tmp_path / "mme.toml").write_text(
        f"""
[endpoint]
name = "from-file"
model_data_url = "{PREFIX_URL}"
instance_type = "ml.g5.2xlarge"
region = "eu-west-1"
artifacts = "artifacts"

[deploy]
role_arn = "{ROLE}"
instance_count = 2
"""
    )
    monkeypatch.chdir(tmp_path)
    result = run_cli(["deploy", "--dry-run", "--instance-type", "ml.g5.4xlarge"])
    assert result.exit_code == 0, result.output
    assert '"EndpointName": "from-file"' in result.output
    assert '"InstanceType": "ml.g5.4xlarge", "InitialInstanceCount": 2' in result.output
    assert "763104351884.dkr.ecr.eu-west-1.amazonaws.com" in result.output
    assert '"Key": "models/model-1.tar.gz"' in result.output


def test_missing_required_input_names_flag_and_file_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = run_cli(["deploy", "--dry-run", "--endpoint-name", "x"])
    assert str(result.exception).splitlines() == [
        "3 problems with the inputs:",
        "  --role-arn is required (or set role_arn in [deploy] of mme.toml)",
        "  --model-data-url is required (or set model_data_url in [endpoint] of mme.toml)",
        "  --instance-type is required (or set instance_type in [endpoint] of mme.toml)",
    ]


def test_environment_feeds_deploy_between_flags_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    (tmp_path / "mme.toml").write_text('[deploy]\ntriton_version = "24.05"\ninstance_count = 3\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MME_LOCAL_ROLE_ARN", ROLE)
    monkeypatch.setenv("MME_LOCAL_INSTANCE_COUNT", "2")
    args = deploy_args("--dry-run")
    del args[args.index("--role-arn") : args.index("--role-arn") + 2]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert '"InitialInstanceCount": 2' in result.output
    assert "sagemaker-tritonserver:24.05-py3" in result.output


def test_bad_file_value_for_deploy_names_its_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forbid_aws(monkeypatch, tmp_path)
    (tmp_path / "mme.toml").write_text('[endpoint]\nmodel_cache = "Sometimes"\n')
    monkeypatch.chdir(tmp_path)
    result = run_cli(deploy_args("--dry-run"))
    assert isinstance(result.exception, SettingsError)
    assert str(result.exception).startswith("[endpoint] model_cache in mme.toml: 'Sometimes'")


def test_zeros_request_follows_the_config(tmp_path: Path) -> None:
    body = json.loads(zeros_request(write_artifact(tmp_path / "m.tar.gz")))
    assert body == {
        "inputs": [{"name": "INPUT__0", "shape": [1, 1], "datatype": "INT32", "data": [0]}]
    }


def test_runtime_client_for_the_cloud_and_for_look_alikes() -> None:
    client = runtime_client("eu-west-1")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.read_timeout == 70
    local = runtime_client("us-east-1", endpoint_url="http://127.0.0.1:8080")
    assert local.meta.endpoint_url == "http://127.0.0.1:8080"
    assert local.meta.config.read_timeout == 70


def test_aws_errors_become_advice() -> None:
    from botocore.exceptions import ClientError, NoCredentialsError

    from cloud.aws import explain

    def client_error(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "CreateModel")

    denied = explain("sagemaker CreateModel", client_error("AccessDeniedException", "not allowed."))
    assert str(denied) == (
        "sagemaker CreateModel failed (AccessDeniedException: not allowed): grant the caller "
        "permission for sagemaker CreateModel or use other credentials"
    )
    throttled = explain("sagemaker CreateModel", client_error("ThrottlingException", "slow"))
    assert "wait a minute and run the command again" in str(throttled)
    limit = explain("sagemaker CreateEndpoint", client_error("ResourceLimitExceeded", "quota"))
    assert "Service Quotas" in str(limit)
    in_use = explain("sagemaker DeleteModel", client_error("ResourceInUse", "busy"))
    assert "wait for it to settle" in str(in_use)
    assert "aws configure" in str(explain("s3 HeadBucket", NoCredentialsError()))
    assert isinstance(denied, AwsCallFailed)


def test_no_wait_returns_after_the_create(aws: None) -> None:
    result = run_cli(deploy_args("--no-wait"))
    assert result.exit_code == 0, result.output
    assert "endpoint demo-mme: Creating" in result.output


def test_the_cli_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = "import sys, mme_local.cli.app; print('sagemaker' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False", output.stderr
