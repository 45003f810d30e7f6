"""boto3 clients for the deployer, and AWS errors turned into one-line advice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from cloud.errors import AwsCallFailed

# Standard mode retries throttling with backoff; 70 s read timeout as AWS advises for
# InvokeEndpoint, whose model may take the full 60 s.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=70)

_ACCESS = {
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "403",
}
_THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException", "SlowDown"}


def make_session(region: str | None, profile: str | None = None) -> boto3.Session:
    try:
        return boto3.Session(region_name=region, profile_name=profile)
    except ProfileNotFound as error:
        raise AwsCallFailed(f"{error}: fix --profile or add it with `aws configure`") from error


def make_client(session: boto3.Session, service: str) -> Any:
    config = _RUNTIME_CONFIG if service == "sagemaker-runtime" else _CONFIG
    return session.client(service, config=config)


@dataclass
class Clients:
    sagemaker: Any
    s3: Any
    runtime: Any

    @classmethod
    def for_session(cls, session: boto3.Session) -> Clients:
        return cls(
            make_client(session, "sagemaker"),
            make_client(session, "s3"),
            make_client(session, "sagemaker-runtime"),
        )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: ClientError) -> bool:
    """SageMaker's Describe* answer ValidationException 'Could not find ...' for a missing name."""
    message = str(error.response.get("Error", {}).get("Message", "")).lower()
    return error_code(error) in {"ValidationException", "ValidationError"} and (
        "could not find" in message or "not found" in message or "does not exist" in message
    )


def explain(operation: str, error: Exception) -> AwsCallFailed:
    """One line for the user: what AWS said about `operation` and what to do about it."""
    if isinstance(error, NoCredentialsError):
        return AwsCallFailed(
            f"{operation}: no AWS credentials found: run `aws configure`, set AWS_PROFILE or "
            "pass --profile (--dry-run needs none)"
        )
    if not isinstance(error, ClientError):
        detail = str(error) if isinstance(error, BotoCoreError) else repr(error)
        return AwsCallFailed(f"{operation} failed: {detail}; check the network and region")
    code = error_code(error)
    message = str(error.response.get("Error", {}).get("Message", "")).rstrip(".")
    if code in _ACCESS:
        advice = f"grant the caller permission for {operation} or use other credentials"
    elif code in _THROTTLING:
        advice = "AWS is throttling this account; wait a minute and run the command again"
    elif code == "ResourceInUse":
        advice = "the resource is busy or being deleted; wait for it to settle and run again"
    elif code == "ResourceLimitExceeded":
        advice = (
            "an account quota is exhausted; request an increase in Service Quotas "
            "(SageMaker, '<instance type> for endpoint usage') or use fewer instances"
        )
    elif code in {"NoSuchBucket", "404"} and operation.startswith("s3"):
        advice = "create the bucket first (aws s3 mb s3://<bucket>) or fix --model-data-url"
    else:
        advice = "fix the input named above, or see the AWS message"
    return AwsCallFailed(f"{operation} failed ({code}: {message}): {advice}")
