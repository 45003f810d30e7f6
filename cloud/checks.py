"""Input checks that run before any AWS call, with the patterns SageMaker itself applies."""

from __future__ import annotations

import re

from cloud.errors import InvalidDeployInput
from mme_local.settings import INSTANCE_MEMORY
from mme_local.store.s3url import InvalidS3Url, S3Prefix

# One table for the emulator's memory budgets and for what the deployer accepts.
GPU_MME_INSTANCE_TYPES: tuple[str, ...] = tuple(INSTANCE_MEMORY)
MODEL_CACHE_SETTINGS = ("Enabled", "Disabled")

# botocore's sagemaker service model: EndpointName, ModelName, EndpointConfigName, RoleArn.
_RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def supported_families() -> str:
    """'ml.g5.{xlarge,2xlarge,...}; ml.p3.2xlarge' built from the accepted instance types."""
    families: dict[str, list[str]] = {}
    for instance_type in GPU_MME_INSTANCE_TYPES:
        family, _, size = instance_type.rpartition(".")
        families.setdefault(family, []).append(size)
    return "; ".join(
        f"{family}.{sizes[0]}" if len(sizes) == 1 else f"{family}.{{{','.join(sizes)}}}"
        for family, sizes in families.items()
    )


def check_instance_type(instance_type: str) -> None:
    if instance_type in GPU_MME_INSTANCE_TYPES:
        return
    family = instance_type.rpartition(".")[0]
    known_family = any(t.startswith(family + ".") for t in GPU_MME_INSTANCE_TYPES)
    why = (
        "is not a single-GPU size of its family"
        if known_family
        else "is not an instance type SageMaker runs GPU multi-model endpoints on"
    )
    raise InvalidDeployInput(
        f"--instance-type {instance_type} {why}; GPU MME needs one GPU per instance: "
        f"use one of {supported_families()}"
    )


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
