"""The SageMaker API's read side, checked on the wire with botocore's own serializer, parser and
validator for the `sagemaker` service model: the requests botocore sends, the answers it reads."""

from __future__ import annotations

import hashlib
import re
import sys
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, cast

import botocore.session
import httpx
import pytest
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters

from mme_local.gateway import control_plane
from mme_local.gateway.app import Gateway, create_app
from mme_local.gateway.control_plane import ControlPlane, LocalEndpoint
from mme_local.runtime.triton_config import TritonSettings
from mme_local.settings import EmulatorSettings

SERVICE = botocore.session.get_session().get_service_model("sagemaker")
CREATED = 1_767_225_600.0  # 2026-01-01T00:00:00Z
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-tritonserver:24.09-py3"
# registry/repository@digest, as DeployedImage documents ResolvedImage (the digest is made up).
RESOLVED = (
    "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-tritonserver@sha256:"
    + hashlib.sha256(IMAGE.encode()).hexdigest()
)
SETTINGS = EmulatorSettings(
    endpoint_name="Shop-MME",
    region="eu-west-1",
    instance_type="ml.g4dn.xlarge",
    model_cache="Disabled",
    model_data_url="s3://models/team-a/",
)


def plane(settings: EmulatorSettings = SETTINGS) -> ControlPlane:
    endpoint = LocalEndpoint.from_settings(settings, settings.model_data_url, CREATED)
    return ControlPlane(endpoint, image_lookup=lambda region, instance_type: IMAGE)


async def call(
    operation: str, params: dict[str, Any] | None = None, control: ControlPlane | None = None
) -> dict[str, Any]:
    """Serialize as botocore does, send to the gateway in-process, parse as botocore does."""
    model: OperationModel = SERVICE.operation_model(operation)
    request = create_serializer("json").serialize_to_request(params or {}, model)
    gateway = cast(Gateway, SimpleNamespace(control=control or plane()))
    transport = httpx.ASGITransport(app=create_app(lambda: gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post("/", content=request["body"], headers=request["headers"])
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    raw = {"status_code": response.status_code, "headers": response.headers}
    parsed: dict[str, Any] = create_parser("json").parse(
        {**raw, "body": response.content}, model.output_shape
    )
    if response.status_code == 200:
        members = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        # Raises on a member the model lacks, a missing required one or a wrong type.
        validate_parameters(members, model.output_shape)
    return parsed


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


async def test_describe_endpoint_is_in_service_with_its_variant() -> None:
    answer = await call("DescribeEndpoint", {"EndpointName": "Shop-MME"})
    assert answer["EndpointName"] == "Shop-MME"
    assert answer["EndpointArn"] == "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/shop-mme"
    assert answer["EndpointConfigName"] == "Shop-MME"
    assert answer["EndpointStatus"] == "InService"
    assert answer["CreationTime"] == answer["LastModifiedTime"] == utc(CREATED)
    assert answer["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "DeployedImages": [
                {
                    "SpecifiedImage": IMAGE,
                    "ResolvedImage": RESOLVED,
                    "ResolutionTime": utc(CREATED),
                }
            ],
            "CurrentWeight": 1.0,
            "DesiredWeight": 1.0,
            "CurrentInstanceCount": 1,
            "DesiredInstanceCount": 1,
        }
    ]


async def test_describe_endpoint_config_names_the_model_and_instance_type() -> None:
    answer = await call("DescribeEndpointConfig", {"EndpointConfigName": "Shop-MME"})
    assert answer["EndpointConfigArn"].endswith(":endpoint-config/shop-mme")
    assert answer["CreationTime"] == utc(CREATED)
    assert answer["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "Shop-MME",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.g4dn.xlarge",
            "InitialVariantWeight": 1.0,
        }
    ]


async def test_describe_model_is_the_multi_model_container_deploy_would_create() -> None:
    triton = TritonSettings(thread_count=4, extra_args=("--log-info=true",))
    answer = await call(
        "DescribeModel",
        {"ModelName": "Shop-MME"},
        plane(SETTINGS.model_copy(update={"triton": triton})),
    )
    assert answer["ModelArn"] == "arn:aws:sagemaker:eu-west-1:123456789012:model/shop-mme"
    assert answer["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/mme-local"
    container = answer["PrimaryContainer"]
    assert container["Image"] == IMAGE
    assert container["Mode"] == "MultiModel"
    assert container["ModelDataUrl"] == "s3://models/team-a/"
    assert container["MultiModelConfig"] == {"ModelCacheSetting": "Disabled"}
    environment = container["Environment"]
    assert environment["SAGEMAKER_MULTI_MODEL"] == "true"
    assert environment["SAGEMAKER_TRITON_THREAD_COUNT"] == "4"
    assert environment["SAGEMAKER_TRITON_ADDITIONAL_ARGS"] == "--log-info=true"


async def test_list_calls_return_the_one_resource_each() -> None:
    endpoints = await call("ListEndpoints")
    assert endpoints["Endpoints"] == [
        {
            "EndpointName": "Shop-MME",
            "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/shop-mme",
            "CreationTime": utc(CREATED),
            "LastModifiedTime": utc(CREATED),
            "EndpointStatus": "InService",
        }
    ]
    assert "NextToken" not in endpoints
    configs = await call("ListEndpointConfigs", {"MaxResults": 10})
    assert [c["EndpointConfigName"] for c in configs["EndpointConfigs"]] == ["Shop-MME"]
    models = await call("ListModels", {"SortBy": "CreationTime", "SortOrder": "Descending"})
    assert [m["ModelName"] for m in models["Models"]] == ["Shop-MME"]


@pytest.mark.parametrize(
    ("params", "listed"),
    [
        ({"NameContains": "shop"}, True),
        ({"NameContains": "other"}, False),
        ({"StatusEquals": "InService"}, True),
        ({"StatusEquals": "Creating"}, False),
        ({"CreationTimeAfter": utc(CREATED - 1)}, True),
        ({"CreationTimeAfter": utc(CREATED + 1)}, False),
        ({"CreationTimeBefore": utc(CREATED + 1)}, True),
        ({"LastModifiedTimeBefore": utc(CREATED - 1)}, False),
        ({"NextToken": "page-2"}, False),
    ],
)
async def test_list_filters_apply_to_the_endpoint(params: dict[str, Any], listed: bool) -> None:
    answer = await call("ListEndpoints", params)
    assert len(answer["Endpoints"]) == int(listed)


@pytest.mark.parametrize(
    ("operation", "member", "message"),
    [
        (
            "DescribeEndpoint",
            "EndpointName",
            'Could not find endpoint "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/other".',
        ),
        (
            "DescribeEndpointConfig",
            "EndpointConfigName",
            "Could not find endpoint configuration "
            '"arn:aws:sagemaker:eu-west-1:123456789012:endpoint-config/other".',
        ),
        (
            "DescribeModel",
            "ModelName",
            'Could not find model "arn:aws:sagemaker:eu-west-1:123456789012:model/other".',
        ),
    ],
)
async def test_unknown_names_are_validation_exceptions(
    operation: str, member: str, message: str
) -> None:
    answer = await call(operation, {member: "Other"})
    assert answer["Error"] == {"Code": "ValidationException", "Message": message}
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert answer["ResponseMetadata"]["RequestId"]


async def test_write_calls_say_they_are_not_emulated() -> None:
    answer = await call("DeleteEndpoint", {"EndpointName": "Shop-MME"})
    assert answer["Error"]["Code"] == "NotEmulated"
    assert answer["Error"]["Message"].startswith(
        "DeleteEndpoint is not emulated: the local endpoint answers only DescribeEndpoint, "
    )
    assert "`mme-local deploy`" in answer["Error"]["Message"]


async def test_a_body_that_is_not_a_json_object_is_refused() -> None:
    gateway = cast(Gateway, SimpleNamespace(control=plane()))
    transport = httpx.ASGITransport(app=create_app(lambda: gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.post(
            "/", content=b"[1]", headers={"X-Amz-Target": "SageMaker.ListModels"}
        )
    assert response.status_code == 400
    assert response.json() == {
        "__type": "ValidationException",
        "message": "The request body is not a JSON object.",
    }


def test_image_is_the_one_deploy_resolves_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    assert control_plane.triton_image("eu-west-1", "ml.g5.xlarge") == IMAGE


def test_image_falls_back_to_the_fixed_pattern_without_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sagemaker.core", None)
    assert control_plane.triton_image("ap-south-2", "ml.g5.xlarge") == (
        "763104351884.dkr.ecr.ap-south-2.amazonaws.com/sagemaker-tritonserver:24.09-py3"
    )


def test_image_falls_back_without_the_deployer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cloud.image", None)
    assert control_plane.triton_image("us-west-2", "ml.g5.xlarge") == (
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/sagemaker-tritonserver:24.09-py3"
    )


def test_triton_arguments_deploy_refuses_still_leave_a_description() -> None:
    triton = TritonSettings(extra_args=("--model-load-thread-count 2",))
    endpoint = LocalEndpoint.from_settings(
        SETTINGS.model_copy(update={"triton": triton}), "s3://b/p/", CREATED
    )
    assert "SAGEMAKER_TRITON_ADDITIONAL_ARGS" not in endpoint.environment
    assert endpoint.environment["SAGEMAKER_MULTI_MODEL"] == "true"


def test_botocore_refuses_a_describe_without_a_name() -> None:
    """The server's own null check is for clients that skip validation; botocore does not."""
    model = SERVICE.operation_model("DescribeEndpoint")
    with pytest.raises(ParamValidationError):
        validate_parameters({}, model.input_shape)
    with pytest.raises(control_plane.ValidationException, match="Value null at 'endpointName'"):
        plane().handle("DescribeEndpoint", {})


def test_the_resolved_image_is_shaped_like_ecrs_digest_form() -> None:
    resolved = control_plane.resolved_image(IMAGE)
    repository, _, digest = resolved.partition("@")
    assert repository == IMAGE.rsplit(":", 1)[0]
    assert re.fullmatch(SERVICE.shape_for("ImageDigest").metadata["pattern"], digest)
    assert control_plane.resolved_image(IMAGE + "x") != resolved


async def test_describe_endpoint_counts_the_instances_up_runs() -> None:
    settings = SETTINGS.model_copy(update={"instance_count": 3})
    control = plane(settings)
    (variant,) = (await call("DescribeEndpoint", {"EndpointName": "Shop-MME"}, control))[
        "ProductionVariants"
    ]
    assert variant["CurrentInstanceCount"] == variant["DesiredInstanceCount"] == 3
    (config,) = (await call("DescribeEndpointConfig", {"EndpointConfigName": "Shop-MME"}, control))[
        "ProductionVariants"
    ]
    assert config["InitialInstanceCount"] == 3
