"""The Triton image for a region and version, as the SageMaker SDK resolves it."""

from __future__ import annotations

from cloud.errors import InvalidDeployInput

FRAMEWORK = "sagemaker-tritonserver"
DEFAULT_TRITON_VERSION = "24.09"


def triton_image_uri(region: str, version: str, instance_type: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-tritonserver:<version>-py3`."""
    return framework_image_uri(FRAMEWORK, "Triton", region, version, instance_type)


def framework_image_uri(
    framework: str, label: str, region: str, version: str, instance_type: str
) -> str:
    """A SageMaker inference image's URI, resolved offline: the SDK reads the registry
    accounts from the JSON it ships. `label` names the image in errors."""
    try:
        # The SDK is an optional extra and slow to import; only the deployer needs it.
        from sagemaker.core import image_uris
    except ImportError as error:
        raise InvalidDeployInput(
            "the SageMaker SDK is missing: pip install 'mme-local[cloud]'"
        ) from error
    try:
        uri = image_uris.retrieve(
            framework, region, version=version, instance_type=instance_type, image_scope="inference"
        )
    except ValueError as error:
        raise InvalidDeployInput(
            f"no SageMaker {label} image for version {version!r} in {region}: {error}"
        ) from error
    return str(uri)
