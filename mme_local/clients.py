"""boto3 clients for a local endpoint: the one place their credentials and timeouts are set."""

from __future__ import annotations

from typing import Any

# Any credentials pass (no SigV4 check); botocore still insists on having some.
LOCAL_CREDENTIALS = {"aws_access_key_id": "mme-local", "aws_secret_access_key": "mme-local"}


def local_runtime_client(endpoint_url: str, region: str = "us-east-1", **config: Any) -> Any:
    """A sagemaker-runtime client for a local endpoint: no retries, a 70 s read timeout
    (past SageMaker's 60 s, so its own timeout error arrives first). `config` overrides."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {"read_timeout": 70, "retries": {"max_attempts": 1}}
    options.update(config)
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(**options),
        **LOCAL_CREDENTIALS,
    )
