"""What a deploy will ask of AWS, worked out offline from its inputs.

The names of the model and endpoint config carry a hash of what they contain, so the same inputs
always name the same resources (a second run finds them and changes nothing) and changed inputs
name new ones that the endpoint rolls to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore import xform_name

from cloud import checks
from cloud.compat import Verdict, footprint_check, gpu_check
from cloud.errors import InvalidDeployInput, Problems
from cloud.image import DEFAULT_TRITON_VERSION, triton_image_uri
from cloud.parity import argv_verdict
from cloud.torchserve import DEFAULT_PYTORCH_VERSION, config_verdict, pytorch_image_uri
from cloud.torchserve import gpu_check as pytorch_gpu_check
from mme_local.artifacts.lint import find_archives, lint_archive
from mme_local.instances import InstanceType
from mme_local.instances import instance_type as lookup_instance_type
from mme_local.runtime import torchserve_config
from mme_local.runtime.torchserve_config import TorchServeSettings
from mme_local.runtime.triton_config import (
    TritonSettings,
    UnportableTritonSetting,
    sagemaker_environment,
)
from mme_local.store.publish import extracted_size, versioned_name
from mme_local.store.s3url import S3Prefix

# Set on everything the deployer creates; teardown and clean-up only delete what carries it.
OWNER_TAG = "mme-local:endpoint"
HASH_LENGTH = 10


@dataclass(frozen=True)
class DeployRequest:
    endpoint_name: str
    role_arn: str
    model_data_url: str
    instance_type: str
    region: str
    instance_count: int = 1
    artifacts_dir: Path | None = None
    triton_version: str = DEFAULT_TRITON_VERSION
    model_cache: str = "Enabled"
    variant_name: str = "AllTraffic"
    triton: TritonSettings = field(default_factory=TritonSettings)
    """The settings `up` runs Triton with; the cloud container gets the same."""
    stack: str = "triton"
    """"triton" (the SageMaker Triton image) or "torchserve" (the PyTorch inference DLC)."""
    pytorch_version: str = DEFAULT_PYTORCH_VERSION
    """PyTorch inference DLC version, for the torchserve stack."""
    torchserve: TorchServeSettings = field(default_factory=TorchServeSettings)
    """The settings `up --stack torchserve` runs TorchServe with; the cloud gets the same."""
    footprint_bytes: int | None = None
    """A model's measured footprint; None: the largest artifact's extracted size stands in."""
    overwrite: bool = False
    """Replace objects whose content differs under the same key."""
    versioned_names: bool = False
    """Upload each artifact as <name>-<content hash>.tar.gz."""


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    """The API operation name, as AWS documents it (CreateModel)."""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(xform_name(self.operation))

    def __str__(self) -> str:
        return f"{self.service} {self.operation} {json.dumps(self.params, default=_printable)}"


def _printable(value: object) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _short_hash(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def derived_name(endpoint_name: str, digest: str) -> str:
    """`<endpoint>-<hash>`, shortened to SageMaker's 63-character limit."""
    return f"{endpoint_name[: 62 - HASH_LENGTH]}-{digest}"


@dataclass(frozen=True)
class DeployPlan:
    request: DeployRequest
    image_uri: str
    prefix: S3Prefix
    artifacts: tuple[tuple[Path, str], ...]
    """(local file, TargetModel) pairs to upload under the prefix."""
    environment: dict[str, str] = field(default_factory=dict)
    """The container's Environment: the local server's settings as the image's start-up
    script reads them (Triton's `serve`, or the PyTorch toolkit)."""
    verdicts: tuple[Verdict, ...] = ()
    """What the checks found, and what the plan added to make the pairing work."""

    @property
    def tags(self) -> list[dict[str, str]]:
        return [{"Key": OWNER_TAG, "Value": self.request.endpoint_name}]

    @property
    def container(self) -> dict[str, Any]:
        return {
            "Image": self.image_uri,
            "ModelDataUrl": self.prefix.url(),
            "Mode": "MultiModel",
            "MultiModelConfig": {"ModelCacheSetting": self.request.model_cache},
            "Environment": self.environment,
        }

    @property
    def model_name(self) -> str:
        digest = _short_hash([self.container, self.request.role_arn])
        return derived_name(self.request.endpoint_name, digest)

    @property
    def variant(self) -> dict[str, Any]:
        return {
            "VariantName": self.request.variant_name,
            "ModelName": self.model_name,
            "InstanceType": self.request.instance_type,
            "InitialInstanceCount": self.request.instance_count,
            "InitialVariantWeight": 1.0,
        }

    @property
    def config_name(self) -> str:
        return derived_name(self.request.endpoint_name, _short_hash(self.variant))

    def create_model(self) -> AwsCall:
        return AwsCall(
            "sagemaker",
            "CreateModel",
            {
                "ModelName": self.model_name,
                "ExecutionRoleArn": self.request.role_arn,
                "PrimaryContainer": self.container,
                "Tags": self.tags,
            },
        )

    def create_endpoint_config(self) -> AwsCall:
        return AwsCall(
            "sagemaker",
            "CreateEndpointConfig",
            {
                "EndpointConfigName": self.config_name,
                "ProductionVariants": [self.variant],
                "Tags": self.tags,
            },
        )

    def create_endpoint(self) -> AwsCall:
        return AwsCall(
            "sagemaker",
            "CreateEndpoint",
            {
                "EndpointName": self.request.endpoint_name,
                "EndpointConfigName": self.config_name,
                "Tags": self.tags,
            },
        )

    def update_endpoint(self) -> AwsCall:
        return AwsCall(
            "sagemaker",
            "UpdateEndpoint",
            {"EndpointName": self.request.endpoint_name, "EndpointConfigName": self.config_name},
        )

    def describe(self, operation: str, key: str, name: str) -> AwsCall:
        return AwsCall("sagemaker", operation, {key: name})

    def dry_run_calls(self) -> list[AwsCall]:
        """Every call a deploy makes where nothing exists yet, in order."""
        calls: list[AwsCall] = []
        if self.artifacts:
            calls.append(AwsCall("s3", "HeadBucket", {"Bucket": self.prefix.bucket}))
        for path, target in self.artifacts:
            key = self.prefix.key_for(target)
            location = {"Bucket": self.prefix.bucket, "Key": key}
            calls.append(AwsCall("s3", "HeadObject", location))
            calls.append(
                AwsCall(
                    "s3",
                    "PutObject",
                    {**location, "Body": f"<{path}, {path.stat().st_size} bytes>"},
                )
            )
        endpoint = self.request.endpoint_name
        calls += [
            self.describe("DescribeModel", "ModelName", self.model_name),
            self.create_model(),
            self.describe("DescribeEndpointConfig", "EndpointConfigName", self.config_name),
            self.create_endpoint_config(),
            self.describe("DescribeEndpoint", "EndpointName", endpoint),
            self.create_endpoint(),
            self.describe("DescribeEndpoint", "EndpointName", endpoint),
        ]
        return calls


def build_plan(request: DeployRequest) -> DeployPlan:
    """Check every input and artifact, resolve the image; makes no AWS call."""
    problems = Problems()
    problems.check(lambda: checks.check_resource_name(request.endpoint_name))
    problems.check(lambda: checks.check_instance_type(request.instance_type))
    problems.check(lambda: checks.check_instance_count(request.instance_count))
    problems.check(lambda: checks.check_role_arn(request.role_arn))
    problems.check(lambda: checks.check_region(request.region))
    problems.check(lambda: checks.check_model_cache(request.model_cache))
    prefix = problems.check(lambda: checks.parse_model_data_url(request.model_data_url))
    # The stack is checked first inside: its lint depends on it.
    artifacts = problems.check(
        lambda: _checked_artifacts(request.artifacts_dir, request.versioned_names, request.stack)
    )
    problems.raise_any()
    assert not isinstance(prefix, bool) and not isinstance(artifacts, bool)
    instance = lookup_instance_type(request.instance_type)
    image, environment, verdicts = STACKS[request.stack](request, instance)
    if request.footprint_bytes is not None:
        verdicts.append(footprint_check(instance, request.footprint_bytes, measured=True))
    elif artifacts:
        largest = max((path for path, _ in artifacts), key=lambda p: p.stat().st_size)
        verdicts.append(footprint_check(instance, extracted_size(largest), measured=False))
    return DeployPlan(request, image, prefix, artifacts, environment, tuple(verdicts))


Container = tuple[str, dict[str, str], list[Verdict]]
"""(image URI, Environment, verdicts) of one stack's container."""


def _triton_container(request: DeployRequest, instance: InstanceType) -> Container:
    gpu, needed = gpu_check(instance, request.triton_version)
    triton = request.triton
    missing = tuple(a for a in needed if a not in triton.extra_args)
    if missing:
        triton = replace(triton, extra_args=(*triton.extra_args, *missing))
    try:
        environment = sagemaker_environment(triton)
    except UnportableTritonSetting as error:
        raise InvalidDeployInput(str(error)) from error
    image = triton_image_uri(request.region, request.triton_version, request.instance_type)
    return image, environment, [gpu, argv_verdict(triton, environment)]


def _torchserve_container(request: DeployRequest, instance: InstanceType) -> Container:
    gpu = pytorch_gpu_check(instance, request.pytorch_version)
    environment = torchserve_config.sagemaker_environment(request.torchserve)
    image = pytorch_image_uri(request.region, request.pytorch_version, request.instance_type)
    return image, environment, [gpu, config_verdict(request.torchserve, environment)]


STACKS: dict[str, Callable[[DeployRequest, InstanceType], Container]] = {
    "triton": _triton_container,
    "torchserve": _torchserve_container,
}


def _checked_artifacts(
    folder: Path | None, versioned: bool, stack: str = "triton"
) -> tuple[tuple[Path, str], ...]:
    if stack not in STACKS:
        raise InvalidDeployInput(f"--stack must be one of {', '.join(STACKS)}, not {stack!r}")
    if folder is None:
        return ()
    if not folder.is_dir():
        raise InvalidDeployInput(f"--artifacts {folder} is not a folder of *.tar.gz files")
    archives = find_archives([folder])
    if not archives:
        raise InvalidDeployInput(f"--artifacts {folder} holds no *.tar.gz files")
    failing = [
        errors
        for archive in archives
        if (errors := [p for p in lint_archive(archive, stack=stack) if p.severity == "error"])
    ]
    if failing:
        raise InvalidDeployInput(
            f"{len(failing)} artifact(s) fail lint, first {failing[0][0]} "
            f"(run `mme-local lint --stack {stack} {folder}` for every problem)"
        )
    if versioned:
        return tuple((archive, versioned_name(archive)) for archive in archives)
    return tuple((archive, archive.name) for archive in archives)
