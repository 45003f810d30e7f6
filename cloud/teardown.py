"""Delete an endpoint with its config and models (and, when asked, its artifacts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloud.aws import Clients
from cloud.deploy import AwsExecutor, owned
from cloud.errors import AwsCallFailed
from cloud.plan import AwsCall
from mme_local.store.s3url import S3Prefix

_DELETE_BATCH = 1000


@dataclass
class TeardownReport:
    deleted: list[str] = field(default_factory=list)


def teardown(
    clients: Clients,
    endpoint_name: str,
    delete_artifacts: bool = False,
    say: Callable[[str], None] | None = None,
) -> TeardownReport:
    """Delete what the endpoint uses, plus configs and models the deployer left for it.

    Safe to run again: what is already gone is skipped.
    """
    aws = AwsExecutor(clients)
    report = TeardownReport()

    def done(what: str) -> None:
        report.deleted.append(what)
        if say:
            say(f"deleted {what}")

    configs: list[str] = []
    endpoint = aws(AwsCall("sagemaker", "DescribeEndpoint", {"EndpointName": endpoint_name}), True)
    if endpoint is not None:
        configs.append(str(endpoint["EndpointConfigName"]))
    configs += [c for c in owned(aws, "EndpointConfigs", endpoint_name) if c not in configs]
    models: list[str] = []
    for config in configs:
        call = AwsCall("sagemaker", "DescribeEndpointConfig", {"EndpointConfigName": config})
        described = aws(call, missing_ok=True) or {}
        for variant in described.get("ProductionVariants", []):
            if variant["ModelName"] not in models:
                models.append(str(variant["ModelName"]))
    models += [m for m in owned(aws, "Models", endpoint_name) if m not in models]
    urls = _model_data_urls(aws, models) if delete_artifacts else []

    if endpoint is not None:
        aws.must(AwsCall("sagemaker", "DeleteEndpoint", {"EndpointName": endpoint_name}))
        done(f"endpoint {endpoint_name}")
    for config in configs:
        call = AwsCall("sagemaker", "DeleteEndpointConfig", {"EndpointConfigName": config})
        if aws(call, missing_ok=True) is not None:
            done(f"endpoint config {config}")
    for model in models:
        if aws(AwsCall("sagemaker", "DeleteModel", {"ModelName": model}), True) is not None:
            done(f"model {model}")
    for url in urls:
        count = _delete_prefix(aws, S3Prefix.parse(url))
        done(f"{count} artifact object(s) under {url}")
    return report


def _model_data_urls(aws: AwsExecutor, models: list[str]) -> list[str]:
    urls: list[str] = []
    for model in models:
        described = aws(AwsCall("sagemaker", "DescribeModel", {"ModelName": model}), True) or {}
        url = described.get("PrimaryContainer", {}).get("ModelDataUrl")
        if url and url not in urls:
            if not S3Prefix.parse(url).prefix:
                raise AwsCallFailed(
                    f"model {model} serves the whole bucket ({url}); refusing to empty it: "
                    "delete the objects yourself and run teardown without --delete-artifacts"
                )
            urls.append(str(url))
    return urls


def _delete_prefix(aws: AwsExecutor, prefix: S3Prefix) -> int:
    keys: list[str] = []
    params: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.prefix}
    while True:
        page = aws.must(AwsCall("s3", "ListObjectsV2", params))
        keys += [str(item["Key"]) for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            break
        params = {**params, "ContinuationToken": page["NextContinuationToken"]}
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
        result = aws.must(
            AwsCall("s3", "DeleteObjects", {"Bucket": prefix.bucket, "Delete": {"Objects": batch}})
        )
        if result.get("Errors"):
            first = result["Errors"][0]
            raise AwsCallFailed(
                f"s3 DeleteObjects could not delete {len(result['Errors'])} object(s), first "
                f"{first.get('Key')} ({first.get('Code')}): check s3:DeleteObject permission"
            )
    return len(keys)
