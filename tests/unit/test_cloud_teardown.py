"""Teardown deletes only what deploy tagged, and only the objects deploy uploaded (moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from cloud.aws import Clients
from cloud.deploy import Deployer
from cloud.errors import TeardownRefused
from cloud.plan import OWNER_TAG, DeployRequest, build_plan
from cloud.teardown import plan_teardown, teardown
from tests.unit.test_cloud import (
    BUCKET,
    IMAGE,
    INSTANCE,
    PREFIX_URL,
    ROLE,
    artifacts_dir,
    run_cli,
    s3_keys,
    sagemaker,
)


def clients() -> Clients:
    return Clients.for_session(boto3.Session(region_name="us-east-1"))


def deployed(tmp_path: Path, name: str = "demo-mme") -> None:
    request = DeployRequest(
        name, ROLE, PREFIX_URL, INSTANCE, "us-east-1", artifacts_dir=artifacts_dir(tmp_path)
    )
    assert Deployer(build_plan(request), clients(), poll_s=0).run().status == "InService"


def hand_made(name: str, tags: list[dict[str, str]], url: str = PREFIX_URL) -> None:
    client = sagemaker()
    container = {"Image": IMAGE, "ModelDataUrl": url, "Mode": "MultiModel"}
    client.create_model(
        ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container, Tags=tags
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InstanceType": INSTANCE,
        "InitialInstanceCount": 1,
    }
    client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], Tags=tags)
    client.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)


@pytest.mark.parametrize(
    ("tags", "reason"),
    [([], "no mme-local:endpoint tag"), ([{"Key": OWNER_TAG, "Value": "other"}], "another")],
)
def test_an_endpoint_deploy_did_not_make_is_refused(
    aws: None, tags: list[dict[str, str]], reason: str
) -> None:
    hand_made("someone-else", tags)
    with pytest.raises(
        TeardownRefused, match=f"refusing to delete endpoint someone-else: .*{reason}"
    ):
        teardown(clients(), "someone-else")
    assert [e["EndpointName"] for e in sagemaker().list_endpoints()["Endpoints"]] == [
        "someone-else"
    ]
    assert len(sagemaker().list_models()["Models"]) == 1


def test_an_untagged_model_is_kept_with_the_reason(aws: None, tmp_path: Path) -> None:
    deployed(tmp_path)
    client = sagemaker()
    model = client.list_models()["Models"][0]
    client.delete_tags(ResourceArn=model["ModelArn"], TagKeys=[OWNER_TAG])
    report = teardown(clients(), "demo-mme")
    assert report.kept == [
        f"model {model['ModelName']}: no {OWNER_TAG} tag, so deploy did not make it"
    ]
    assert [m["ModelName"] for m in client.list_models()["Models"]] == [model["ModelName"]]
    assert client.list_endpoints()["Endpoints"] == []


def test_delete_artifacts_removes_only_what_deploy_uploaded(aws: None, tmp_path: Path) -> None:
    deployed(tmp_path)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key="models/by-hand.tar.gz", Body=b"someone's")
    plan = plan_teardown(clients(), "demo-mme", delete_artifacts=True)
    assert plan.objects == {PREFIX_URL: ["models/model-0.tar.gz", "models/model-1.tar.gz"]}
    assert f"object s3://{BUCKET}/models/by-hand.tar.gz: not uploaded by this deploy" in plan.kept
    teardown(clients(), "demo-mme", delete_artifacts=True, plan=plan)
    assert s3_keys() == ["models/by-hand.tar.gz"]


def test_a_prefix_another_model_serves_is_left_alone(aws: None, tmp_path: Path) -> None:
    deployed(tmp_path)
    hand_made("neighbour", [], url=PREFIX_URL + "team-b/")
    report = teardown(clients(), "demo-mme", delete_artifacts=True)
    assert f"objects under {PREFIX_URL}: also served by model neighbour" in report.kept
    assert s3_keys() == ["models/model-0.tar.gz", "models/model-1.tar.gz"]
    assert [e["EndpointName"] for e in sagemaker().list_endpoints()["Endpoints"]] == ["neighbour"]


def test_dry_run_lists_exactly_what_would_go_and_deletes_nothing(aws: None, tmp_path: Path) -> None:
    deployed(tmp_path)
    client = sagemaker()
    model = client.list_models()["Models"][0]["ModelName"]
    config = client.list_endpoint_configs()["EndpointConfigs"][0]["EndpointConfigName"]
    args = ["teardown", "demo-mme", "--region", "us-east-1", "--delete-artifacts", "--dry-run"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    listed = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert listed == [
        "endpoint demo-mme",
        f"endpoint config {config}",
        f"model {model}",
        f"object s3://{BUCKET}/models/model-0.tar.gz",
        f"object s3://{BUCKET}/models/model-1.tar.gz",
    ]
    assert len(client.list_endpoints()["Endpoints"]) == 1
    assert len(s3_keys()) == 2


def test_teardown_asks_first_and_no_keeps_everything(aws: None, tmp_path: Path) -> None:
    deployed(tmp_path)
    from typer.testing import CliRunner

    from mme_local.cli.app import app

    result = CliRunner().invoke(app, ["teardown", "demo-mme", "--region", "us-east-1"], input="n\n")
    assert result.exit_code == 1
    assert "delete these 3 resource(s)?" in result.output
    assert len(sagemaker().list_endpoints()["Endpoints"]) == 1
