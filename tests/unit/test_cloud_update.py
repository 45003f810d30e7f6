"""The deployer's paths moto lacks (UpdateEndpoint, failures), against botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from cloud.aws import Clients
from cloud.deploy import Deployer
from cloud.errors import AwsCallFailed, EndpointFailed
from cloud.plan import OWNER_TAG, DeployPlan, DeployRequest, build_plan
from tests.unit.test_cloud import INSTANCE, PREFIX_URL, ROLE

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
OLD = "demo-mme-aaaaaaaaaa"


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def plan(instance_count: int = 2) -> DeployPlan:
    return build_plan(
        DeployRequest("demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1", instance_count)
    )


def deployer(client: Any, the_plan: DeployPlan) -> Deployer:
    return Deployer(the_plan, Clients(client, None, None), poll_s=0, sleep=lambda _: None)


def not_found(stubber: Stubber, method: str, params: dict[str, Any]) -> None:
    stubber.add_client_error(
        method, "ValidationException", "Could not find it.", 400, expected_params=params
    )


def endpoint(config: str, status: str, reason: str | None = None) -> dict[str, Any]:
    described = {
        "EndpointName": "demo-mme",
        "EndpointArn": f"{ARN}:endpoint/demo-mme",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    if reason:
        described["FailureReason"] = reason
    return described


def tags(owner: str = "demo-mme") -> dict[str, Any]:
    return {"Tags": [{"Key": OWNER_TAG, "Value": owner}]}


def test_changed_inputs_roll_the_endpoint_and_remove_the_old_config(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    new = plan()
    model = {"ModelName": new.model_name, "ModelArn": f"{ARN}:model/x", "CreationTime": NOW}
    stub.add_response("describe_model", model, {"ModelName": new.model_name})
    not_found(stub, "describe_endpoint_config", {"EndpointConfigName": new.config_name})
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"{ARN}:endpoint-config/new"},
        new.create_endpoint_config().params,
    )
    stub.add_response("describe_endpoint", endpoint(OLD, "InService"), {"EndpointName": "demo-mme"})
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": f"{ARN}:endpoint/demo-mme"},
        {"EndpointName": "demo-mme", "EndpointConfigName": new.config_name},
    )
    stub.add_response("describe_endpoint", endpoint(OLD, "Updating"), {"EndpointName": "demo-mme"})
    stub.add_response(
        "describe_endpoint", endpoint(new.config_name, "InService"), {"EndpointName": "demo-mme"}
    )
    configs = [
        {"EndpointConfigName": OLD, "EndpointConfigArn": f"{ARN}:ec/old", "CreationTime": NOW},
        {
            "EndpointConfigName": new.config_name,
            "EndpointConfigArn": f"{ARN}:ec/new",
            "CreationTime": NOW,
        },
        {
            "EndpointConfigName": "demo-mme-manual",
            "EndpointConfigArn": f"{ARN}:ec/m",
            "CreationTime": NOW,
        },
    ]
    stub.add_response(
        "list_endpoint_configs", {"EndpointConfigs": configs}, {"NameContains": "demo-mme"}
    )
    stub.add_response("list_tags", tags(), {"ResourceArn": f"{ARN}:ec/old"})
    stub.add_response("list_tags", tags(), {"ResourceArn": f"{ARN}:ec/new"})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": OLD})
    models = [
        {"ModelName": "demo-mme-bbbbbbbbbb", "ModelArn": f"{ARN}:model/other", "CreationTime": NOW},
        {"ModelName": new.model_name, "ModelArn": f"{ARN}:model/x", "CreationTime": NOW},
    ]
    stub.add_response("list_models", {"Models": models}, {"NameContains": "demo-mme"})
    stub.add_response("list_tags", tags("another-endpoint"), {"ResourceArn": f"{ARN}:model/other"})
    stub.add_response("list_tags", tags(), {"ResourceArn": f"{ARN}:model/x"})

    outcome = deployer(client, new).run()

    assert outcome.status == "InService"
    assert outcome.changes == [
        f"created endpoint config {new.config_name}",
        f"rolling endpoint demo-mme from {OLD} to {new.config_name}",
        f"deleted superseded endpoint config {OLD}",
    ]


def test_config_name_changes_with_inputs_model_name_only_with_the_model() -> None:
    one, two = plan(1), plan(2)
    assert one.model_name == two.model_name
    assert one.config_name != two.config_name
    assert one.config_name == plan(1).config_name


def test_a_failure_says_what_was_left_behind(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    new = plan()
    not_found(stub, "describe_model", {"ModelName": new.model_name})
    stub.add_response("create_model", {"ModelArn": f"{ARN}:model/x"}, new.create_model().params)
    not_found(stub, "describe_endpoint_config", {"EndpointConfigName": new.config_name})
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": f"{ARN}:ec/x"})
    not_found(stub, "describe_endpoint", {"EndpointName": "demo-mme"})
    stub.add_client_error(
        "create_endpoint", "ResourceLimitExceeded", "The account-level service limit is 0.", 400
    )

    with pytest.raises(AwsCallFailed) as raised:
        deployer(client, new).run()

    assert str(raised.value) == (
        "sagemaker CreateEndpoint failed (ResourceLimitExceeded: The account-level service limit "
        "is 0): an account quota is exhausted; request an increase in Service Quotas (SageMaker, "
        "'<instance type> for endpoint usage') or use fewer instances\n"
        "this run already did:\n"
        f"  created model {new.model_name}\n"
        f"  created endpoint config {new.config_name}\n"
        "to finish: fix the cause and run the same deploy again (it carries on)\n"
        "to remove what it made: mme-local teardown demo-mme"
    )


def _model_and_config_exist(stub: Stubber, config_name: str) -> None:
    stub.add_response(
        "describe_model", {"ModelName": "m", "ModelArn": f"{ARN}:model/m", "CreationTime": NOW}
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": config_name,
            "EndpointConfigArn": f"{ARN}:endpoint-config/c",
            "ProductionVariants": [{"VariantName": "AllTraffic"}],
            "CreationTime": NOW,
        },
    )


def test_update_that_rolls_back_is_an_error(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    new = plan()
    _model_and_config_exist(stub, new.config_name)
    stub.add_response("describe_endpoint", endpoint(OLD, "InService"))
    stub.add_response("update_endpoint", {"EndpointArn": f"{ARN}:endpoint/demo-mme"})
    stub.add_response("describe_endpoint", endpoint(OLD, "RollingBack"))
    stub.add_response("describe_endpoint", endpoint(OLD, "InService", "Image not found"))

    with pytest.raises(EndpointFailed, match="rolled back to demo-mme-aaaaaaaaaa"):
        deployer(client, new).run()


def test_failed_endpoint_points_at_teardown(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    new = plan()
    _model_and_config_exist(stub, new.config_name)
    stub.add_response("describe_endpoint", endpoint(new.config_name, "Failed", "no capacity"))

    with pytest.raises(EndpointFailed) as raised:
        deployer(client, new).run()
    assert str(raised.value) == (
        "endpoint demo-mme is Failed (no capacity): fix the cause, run `mme-local teardown "
        "demo-mme`, then deploy again"
    )
