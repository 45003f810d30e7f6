"""Input checks that run before any AWS call, with the patterns SageMaker itself applies."""

from __future__ import annotations

import re

from cloud.errors import InvalidDeployInput
from mme_local.instances import UnknownInstanceType
from mme_local.instances import instance_type as lookup_instance_type
from mme_local.store.s3url import InvalidS3Url, S3Prefix

MODEL_CACHE_SETTINGS = ("Enabled", "Disabled")

# botocore's sagemaker service model: EndpointName, ModelName, EndpointConfigName, RoleArn.
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def check_instance_type(instance_type: str) -> None:
    try:
        lookup_instance_type(instance_type)
    except UnknownInstanceType as error:
        raise InvalidDeployInput(str(error)) from error


def check_resource_name(name: str, what: str = "endpoint name") -> None:
    if not _RESOURCE_NAME.match(name):
        raise InvalidDeployInput(
            f"{what} {name!r} is not valid: use 1-63 letters, digits and hyphens, starting and "
            "ending with a letter or digit"
        )


def check_role_arn(arn: str) -> None:
    if not 20 <= len(arn) <= 2048 or not _ROLE_ARN.match(arn):
        raise InvalidDeployInput(
            f"--role-arn {arn!r} is not an IAM role ARN: expected "
            "arn:aws:iam::<12-digit account>:role/<name> (a role SageMaker may assume)"
        )


def check_region(region: str) -> None:
    if not _REGION.match(region):
        raise InvalidDeployInput(f"--region {region!r} is not an AWS region name (e.g. us-east-1)")


def check_model_cache(setting: str) -> None:
    if setting not in MODEL_CACHE_SETTINGS:
        raise InvalidDeployInput(f"--model-cache must be Enabled or Disabled, not {setting!r}")


def check_instance_count(count: int) -> None:
    if count < 1:
        raise InvalidDeployInput(f"--instance-count must be at least 1, not {count}")


def parse_model_data_url(url: str) -> S3Prefix:
    try:
        return S3Prefix.parse(url)
    except InvalidS3Url as error:
        raise InvalidDeployInput(f"--model-data-url: {error}") from error
