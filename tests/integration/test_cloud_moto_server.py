"""deploy and teardown through the real CLI against a moto server reached via AWS_ENDPOINT_URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from mme_local.cli.app import app
from mme_local.runtime.base import free_port
from tests.unit.test_cloud import BUCKET, IMAGE, PREFIX_URL, artifacts_dir, deploy_args
from tests.unit.test_cloud_torchserve import IMAGE as PYTORCH_IMAGE
from tests.unit.test_cloud_torchserve import torchserve_artifacts

pytestmark = pytest.mark.integration


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    s3 = boto3.client("s3", region_name="us-east-1")
    try:
        s3.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        # moto's state belongs to the process, not to the server: the artifacts teardown keeps
        # would otherwise be found by the next test's deploy.
        for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
        s3.delete_bucket(Bucket=BUCKET)
        server.stop()


def test_deploy_twice_then_teardown(moto_server: str, tmp_path: Path) -> None:
    folder = artifacts_dir(tmp_path)
    runner = CliRunner()

    first = runner.invoke(app, deploy_args("--artifacts", str(folder)))
    assert first.exit_code == 0, first.output
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    models = sagemaker.list_models()["Models"]
    assert len(models) == 1
    container = sagemaker.describe_model(ModelName=models[0]["ModelName"])["PrimaryContainer"]
    assert (container["Mode"], container["ModelDataUrl"], container["Image"]) == (
        "MultiModel",
        PREFIX_URL,
        IMAGE,
    )
    assert container["Environment"]["SAGEMAKER_TRITON_PING_MODE"] == "live"
    assert len(sagemaker.list_endpoint_configs()["EndpointConfigs"]) == 1
    assert sagemaker.describe_endpoint(EndpointName="demo-mme")["EndpointStatus"] == "InService"
    objects = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    assert sorted(o["Key"] for o in objects["Contents"]) == [
        "models/model-0.tar.gz",
        "models/model-1.tar.gz",
    ]
    head = boto3.client("s3", region_name="us-east-1").head_object(
        Bucket=BUCKET, Key="models/model-0.tar.gz"
    )
    assert head["Metadata"]["mme-local-endpoint"] == "demo-mme"

    second = runner.invoke(app, deploy_args("--artifacts", str(folder)))
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output
    assert sagemaker.list_models()["Models"] == models

    gone = runner.invoke(app, ["teardown", "demo-mme", "--region", "us-east-1"], input="y\n")
    assert gone.exit_code == 0, gone.output
    assert sagemaker.list_models()["Models"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_endpoints()["Endpoints"] == []


def test_torchserve_deploy_twice_then_teardown(moto_server: str, tmp_path: Path) -> None:
    folder = torchserve_artifacts(tmp_path)
    runner = CliRunner()
    args = deploy_args("--stack", "torchserve", "--artifacts", str(folder))

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    [model] = sagemaker.list_models()["Models"]
    container = sagemaker.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]
    assert (container["Mode"], container["ModelDataUrl"], container["Image"]) == (
        "MultiModel",
        PREFIX_URL,
        PYTORCH_IMAGE,
    )
    environment = container["Environment"]
    assert environment["SAGEMAKER_MULTI_MODEL"] == "true"
    assert environment["TS_ENABLE_MODEL_API"] == "true"
    assert sagemaker.describe_endpoint(EndpointName="demo-mme")["EndpointStatus"] == "InService"
    objects = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    assert sorted(o["Key"] for o in objects["Contents"]) == [
        "models/model-0.tar.gz",
        "models/model-1.tar.gz",
    ]

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output

    gone = runner.invoke(app, ["teardown", "demo-mme", "--region", "us-east-1"], input="y\n")
    assert gone.exit_code == 0, gone.output
    assert sagemaker.list_models()["Models"] == []
    assert sagemaker.list_endpoints()["Endpoints"] == []
