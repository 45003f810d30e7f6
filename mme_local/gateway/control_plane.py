"""The read side of SageMaker's control plane for the local endpoint, without HTTP.

SDK v3's `Endpoint.get(name)` (and any code that describes an endpoint before invoking it)
calls `DescribeEndpoint` on the SageMaker API. The local endpoint answers that API's read calls
as if `mme-local deploy` had created it: one InService endpoint, one endpoint config and one
model, all three named like the endpoint, with the variant, instance type and count, the
multi-model container (`Mode: MultiModel`, the prefix as `ModelDataUrl`, the Triton image the
cloud would run, the same `Environment`) and the cache setting. Write calls are refused: the
local endpoint is configured by `mme-local up`'s settings, not through this API.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, ClassVar

from mme_local.runtime.triton_config import (
    TritonSettings,
    UnportableTritonSetting,
    sagemaker_environment,
)
from mme_local.settings import EmulatorSettings

log = logging.getLogger(__name__)

# Deploy's default release (cloud/image.py); local settings don't name one.
IMAGE_TRITON_VERSION = "24.09"
# When the SageMaker SDK (the `cloud` extra) is absent: the account that serves the
# sagemaker-tritonserver images in most regions, as the SDK's own image list records it.
FALLBACK_IMAGE = "763104351884.dkr.ecr.{region}.amazonaws.com/sagemaker-tritonserver:{version}-py3"

# The role deploy would pass is the user's; locally there is none, so a plausible one.
LOCAL_ROLE_NAME = "mme-local"

READ_OPERATIONS = (
    "DescribeEndpoint",
    "DescribeEndpointConfig",
    "DescribeModel",
    "ListEndpoints",
    "ListEndpointConfigs",
    "ListModels",
)


class ControlPlaneError(Exception):
    """An error botocore turns into a ClientError whose code is `code`."""

    code: ClassVar[str] = "ValidationException"
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationException(ControlPlaneError):
    code = "ValidationException"


class NotEmulated(ControlPlaneError):
    code = "NotEmulated"


def triton_image(region: str, instance_type: str) -> str:
    """The image `mme-local deploy` would run, without credentials; a fixed pattern without
    the SageMaker SDK or for a region it does not list."""
    try:
        from cloud.errors import CloudError
        from cloud.image import triton_image_uri
    except ImportError:  # the deployer is not installed beside the emulator
        return FALLBACK_IMAGE.format(region=region, version=IMAGE_TRITON_VERSION)
    try:
        return triton_image_uri(region, IMAGE_TRITON_VERSION, instance_type)
    except CloudError as error:
        log.info("Triton image from the fixed pattern: %s", error)
        return FALLBACK_IMAGE.format(region=region, version=IMAGE_TRITON_VERSION)


def resolved_image(image: str) -> str:
    """`registry/repository@sha256:<digest>`, the form SageMaker reports as `ResolvedImage`.

    The digest cannot be looked up offline: it is the SHA-256 of the image URI, shaped like
    a real one and stable for one image, but not the image's own digest.
    """
    name, _, tag = image.rpartition(":")
    repository = name if name and "/" not in tag else image
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _environment(triton: TritonSettings) -> dict[str, str]:
    try:
        return sagemaker_environment(triton)
    except UnportableTritonSetting:
        # Such settings still run locally; deploy refuses them, the description shows the rest.
        return sagemaker_environment(replace(triton, extra_args=()))


@dataclass(frozen=True)
class LocalEndpoint:
    """What the control plane describes: one endpoint, its config and model, one instance."""

    name: str
    region: str
    account_id: str
    variant_name: str
    instance_type: str
    model_data_url: str
    model_cache: str
    created: float
    """Epoch seconds: CreationTime and LastModifiedTime of all three resources."""
    environment: dict[str, str] = field(default_factory=dict)
    instance_count: int = 1

    @classmethod
    def from_settings(
        cls, settings: EmulatorSettings, model_data_url: str, created: float
    ) -> LocalEndpoint:
        return cls(
            name=settings.endpoint_name,
            region=settings.region,
            account_id=settings.account_id,
            variant_name=settings.variant_name,
            instance_type=settings.instance_type,
            model_data_url=model_data_url,
            model_cache=settings.model_cache,
            created=created,
            environment=_environment(settings.triton),
            instance_count=settings.instance_count,
        )

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{LOCAL_ROLE_NAME}"

    def arn(self, kind: str, name: str | None = None) -> str:
        # SageMaker writes resource names in lower case in its ARNs.
        resource = (name or self.name).lower()
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{resource}"


def _required(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        member = name[0].lower() + name[1:]
        raise ValidationException(
            f"1 validation error detected: Value null at '{member}' failed to satisfy "
            "constraint: Member must not be null"
        )
    return value


def _number(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationException(f"{name} must be a timestamp in epoch seconds, not {value!r}")
    return float(value)


class ControlPlane:
    """`handle(operation, params)` answers one SageMaker API call as botocore expects it."""

    def __init__(
        self, endpoint: LocalEndpoint, image_lookup: Callable[[str, str], str] = triton_image
    ) -> None:
        self.endpoint = endpoint
        self._image_lookup = image_lookup
        self._operations: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "DescribeEndpoint": self.describe_endpoint,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "DescribeModel": self.describe_model,
            "ListEndpoints": self.list_endpoints,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "ListModels": self.list_models,
        }

    @cached_property
    def image(self) -> str:
        """Looked up on first use: the SageMaker SDK takes seconds to import."""
        return self._image_lookup(self.endpoint.region, self.endpoint.instance_type)

    def handle(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The response members; raises ControlPlaneError for anything botocore should raise."""
        handler = self._operations.get(operation)
        if handler is None:
            raise NotEmulated(
                f"{operation} is not emulated: the local endpoint answers only "
                f"{', '.join(READ_OPERATIONS)}. Change it with `mme-local up`'s settings, "
                "or create real resources with `mme-local deploy`."
            )
        return handler(params)

    def _find(self, params: Mapping[str, Any], member: str, kind: str, label: str) -> None:
        name = _required(params, member)
        if name != self.endpoint.name:
            raise ValidationException(f'Could not find {label} "{self.endpoint.arn(kind, name)}".')

    def describe_endpoint(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._find(params, "EndpointName", "endpoint", "endpoint")
        e = self.endpoint
        return {
            **self._endpoint_summary(),
            "EndpointConfigName": e.name,
            "ProductionVariants": [
                {
                    "VariantName": e.variant_name,
                    "DeployedImages": [
                        {
                            "SpecifiedImage": self.image,
                            "ResolvedImage": resolved_image(self.image),
                            "ResolutionTime": e.created,
                        }
                    ],
                    "CurrentWeight": 1.0,
                    "DesiredWeight": 1.0,
                    "CurrentInstanceCount": e.instance_count,
                    "DesiredInstanceCount": e.instance_count,
                }
            ],
        }

    def describe_endpoint_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._find(params, "EndpointConfigName", "endpoint-config", "endpoint configuration")
        e = self.endpoint
        return {
            **self._config_summary(),
            "ProductionVariants": [
                {
                    "VariantName": e.variant_name,
                    "ModelName": e.name,
                    "InitialInstanceCount": e.instance_count,
                    "InstanceType": e.instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
            "EnableNetworkIsolation": False,
        }

    def describe_model(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._find(params, "ModelName", "model", "model")
        e = self.endpoint
        return {
            **self._model_summary(),
            "ExecutionRoleArn": e.role_arn,
            "PrimaryContainer": {
                "Image": self.image,
                "Mode": "MultiModel",
                "ModelDataUrl": e.model_data_url,
                "Environment": dict(e.environment),
                "MultiModelConfig": {"ModelCacheSetting": e.model_cache},
            },
            "EnableNetworkIsolation": False,
        }

    def list_endpoints(self, params: Mapping[str, Any]) -> dict[str, Any]:
        status = params.get("StatusEquals")
        listed = self._listed(params, modified=True) and status in (None, "InService")
        return {"Endpoints": [self._endpoint_summary()] if listed else []}

    def list_endpoint_configs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"EndpointConfigs": [self._config_summary()] if self._listed(params) else []}

    def list_models(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"Models": [self._model_summary()] if self._listed(params) else []}

    def _listed(self, params: Mapping[str, Any], modified: bool = False) -> bool:
        """Whether the one resource passes the List call's filters (NextToken never comes
        back, so a token asks for an empty second page)."""
        if params.get("NextToken"):
            return False
        contains = params.get("NameContains")
        if isinstance(contains, str) and contains.lower() not in self.endpoint.name.lower():
            return False
        created = self.endpoint.created
        bounds = [("CreationTime", created)]
        if modified:
            bounds.append(("LastModifiedTime", created))
        for prefix, value in bounds:
            before = _number(params, f"{prefix}Before")
            after = _number(params, f"{prefix}After")
            if (before is not None and value >= before) or (after is not None and value <= after):
                return False
        return True

    def _endpoint_summary(self) -> dict[str, Any]:
        e = self.endpoint
        return {
            "EndpointName": e.name,
            "EndpointArn": e.arn("endpoint"),
            "CreationTime": e.created,
            "LastModifiedTime": e.created,
            "EndpointStatus": "InService",
        }

    def _config_summary(self) -> dict[str, Any]:
        e = self.endpoint
        return {
            "EndpointConfigName": e.name,
            "EndpointConfigArn": e.arn("endpoint-config"),
            "CreationTime": e.created,
        }

    def _model_summary(self) -> dict[str, Any]:
        e = self.endpoint
        return {"ModelName": e.name, "ModelArn": e.arn("model"), "CreationTime": e.created}
