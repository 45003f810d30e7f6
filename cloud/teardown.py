"""Delete what `deploy` made for an endpoint, and nothing else.

Every SageMaker resource must carry the owner tag `deploy` writes, with this endpoint's name;
every object must carry the owner `deploy` recorded when it uploaded it. Anything else is kept,
with the reason, and an endpoint that is not ours is refused outright.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloud.aws import Clients
from cloud.deploy import AwsExecutor, owned, owner_of
from cloud.errors import AwsCallFailed, TeardownRefused
from cloud.plan import OWNER_TAG, AwsCall
from mme_local.store.publish import head
from mme_local.store.s3url import S3Prefix

_DELETE_BATCH = 1000


@dataclass
class TeardownPlan:
    endpoint_name: str
    endpoint: bool = False
    """Whether the endpoint exists (and is ours) and will be deleted."""
    configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    objects: dict[str, list[str]] = field(default_factory=dict)
    """ModelDataUrl -> keys under it of objects deploy uploaded for this endpoint."""
    kept: list[str] = field(default_factory=list)
    """What is left alone, each with the reason."""

    @property
    def resource_count(self) -> int:
        """The endpoint, endpoint configs and models to delete."""
        return int(self.endpoint) + len(self.configs) + len(self.models)

    @property
    def object_count(self) -> int:
        return sum(len(keys) for keys in self.objects.values())

    def deletions(self) -> list[str]:
        """One line per deletion, in the order they happen."""
        lines = [f"endpoint {self.endpoint_name}"] if self.endpoint else []
        lines += [f"endpoint config {c}" for c in self.configs]
        lines += [f"model {m}" for m in self.models]
        lines += [
            f"object s3://{S3Prefix.parse(url).bucket}/{key}"
            for url, keys in self.objects.items()
            for key in keys
        ]
        return lines


@dataclass
class TeardownReport:
    deleted: list[str] = field(default_factory=list)
    """One line per deletion: each resource, and each prefix's objects as one line."""
    kept: list[str] = field(default_factory=list)
    resources_deleted: int = 0
    """The endpoint, endpoint configs and models deleted."""
    objects_deleted: int = 0


def counted(resources: int, objects: int) -> str:
    """`3 resource(s) and 5 object(s)`, the objects left out when there are none."""
    text = f"{resources} resource(s)"
    return f"{text} and {objects} object(s)" if objects else text


def plan_teardown(
    clients: Clients, endpoint_name: str, delete_artifacts: bool = False
) -> TeardownPlan:
    """What teardown would delete, reading only; TeardownRefused for an endpoint not ours."""
    aws = AwsExecutor(clients)
    plan = TeardownPlan(endpoint_name)
    call = AwsCall("sagemaker", "DescribeEndpoint", {"EndpointName": endpoint_name})
    endpoint = aws(call, missing_ok=True)
    configs: list[str] = []
    if endpoint is not None:
        _require_ours(aws, "endpoint", endpoint_name, str(endpoint["EndpointArn"]), endpoint_name)
        plan.endpoint = True
        configs.append(str(endpoint["EndpointConfigName"]))
    configs += [c for c in owned(aws, "EndpointConfigs", endpoint_name) if c not in configs]
    models: list[str] = []
    for config in configs:
        call = AwsCall("sagemaker", "DescribeEndpointConfig", {"EndpointConfigName": config})
        described = aws(call, missing_ok=True)
        if described is None:
            continue
        reason = _foreign(aws, str(described["EndpointConfigArn"]), endpoint_name)
        if reason:
            plan.kept.append(f"endpoint config {config}: {reason}")
            continue
        plan.configs.append(config)
        for variant in described.get("ProductionVariants", []):
            if variant["ModelName"] not in models:
                models.append(str(variant["ModelName"]))
    models += [m for m in owned(aws, "Models", endpoint_name) if m not in models]
    urls: list[str] = []
    for model in models:
        described = aws(AwsCall("sagemaker", "DescribeModel", {"ModelName": model}), True)
        if described is None:
            continue
        reason = _foreign(aws, str(described["ModelArn"]), endpoint_name)
        if reason:
            plan.kept.append(f"model {model}: {reason}")
            continue
        plan.models.append(model)
        url = described.get("PrimaryContainer", {}).get("ModelDataUrl")
        if url and url not in urls:
            urls.append(str(url))
    if delete_artifacts:
        _plan_objects(aws, clients, plan, urls)
    return plan


def teardown(
    clients: Clients,
    endpoint_name: str,
    delete_artifacts: bool = False,
    say: Callable[[str], None] | None = None,
    plan: TeardownPlan | None = None,
) -> TeardownReport:
    """Delete what `plan_teardown` found (computed here unless given); safe to run again."""
    plan = plan or plan_teardown(clients, endpoint_name, delete_artifacts)
    aws = AwsExecutor(clients)
    report = TeardownReport(kept=list(plan.kept))

    def done(what: str, objects: int = 0) -> None:
        report.deleted.append(what)
        if objects:
            report.objects_deleted += objects
        else:
            report.resources_deleted += 1
        if say:
            say(f"deleted {what}")

    if plan.endpoint:
        aws.must(AwsCall("sagemaker", "DeleteEndpoint", {"EndpointName": endpoint_name}))
        done(f"endpoint {endpoint_name}")
    for config in plan.configs:
        call = AwsCall("sagemaker", "DeleteEndpointConfig", {"EndpointConfigName": config})
        if aws(call, missing_ok=True) is not None:
            done(f"endpoint config {config}")
    for model in plan.models:
        if aws(AwsCall("sagemaker", "DeleteModel", {"ModelName": model}), True) is not None:
            done(f"model {model}")
    for url, keys in plan.objects.items():
        _delete_objects(aws, S3Prefix.parse(url).bucket, keys)
        done(f"{len(keys)} artifact object(s) under {url}", objects=len(keys))
    return report


def _foreign(aws: AwsExecutor, arn: str, endpoint_name: str) -> str | None:
    """Why a resource is not ours to delete, or None when it carries our owner tag."""
    owner = owner_of(aws, arn)
    if owner is None:
        return f"no {OWNER_TAG} tag, so deploy did not make it"
    if owner != endpoint_name:
        return f"tagged {OWNER_TAG}={owner}, another endpoint's"
    return None


def _require_ours(aws: AwsExecutor, kind: str, name: str, arn: str, endpoint_name: str) -> None:
    reason = _foreign(aws, arn, endpoint_name)
    if reason:
        raise TeardownRefused(
            f"refusing to delete {kind} {name}: {reason}; delete it with the AWS console or CLI "
            "if it really should go"
        )


def _plan_objects(aws: AwsExecutor, clients: Clients, plan: TeardownPlan, urls: list[str]) -> None:
    for url in urls:
        prefix = S3Prefix.parse(url)
        sharing = _other_models_on(aws, prefix, plan)
        if sharing:
            plan.kept.append(f"objects under {url}: also served by model {sharing}")
            continue
        for key in _list_keys(aws, prefix):
            remote = head(clients.s3, prefix.bucket, key)
            if remote is not None and remote.owner == plan.endpoint_name:
                plan.objects.setdefault(url, []).append(key)
            else:
                plan.kept.append(f"object s3://{prefix.bucket}/{key}: not uploaded by this deploy")


def _other_models_on(aws: AwsExecutor, prefix: S3Prefix, plan: TeardownPlan) -> str | None:
    """A model outside this teardown whose ModelDataUrl overlaps the prefix, if any."""
    params: dict[str, Any] = {}
    while True:
        page = aws.must(AwsCall("sagemaker", "ListModels", params))
        for item in page.get("Models", []):
            name = str(item["ModelName"])
            if name in plan.models:
                continue
            call = AwsCall("sagemaker", "DescribeModel", {"ModelName": name})
            url = ((aws(call, True) or {}).get("PrimaryContainer") or {}).get("ModelDataUrl")
            if not url:
                continue
            other = S3Prefix.parse(str(url))
            same_bucket = other.bucket == prefix.bucket
            if same_bucket and (
                other.prefix.startswith(prefix.prefix) or prefix.prefix.startswith(other.prefix)
            ):
                return name
        token = page.get("NextToken")
        if not token:
            return None
        params = {"NextToken": token}


def _list_keys(aws: AwsExecutor, prefix: S3Prefix) -> list[str]:
    keys: list[str] = []
    params: dict[str, Any] = {"Bucket": prefix.bucket, "Prefix": prefix.prefix}
    while True:
        page = aws.must(AwsCall("s3", "ListObjectsV2", params))
        keys += [str(item["Key"]) for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        params = {**params, "ContinuationToken": page["NextContinuationToken"]}


def _delete_objects(aws: AwsExecutor, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
        result = aws.must(
            AwsCall("s3", "DeleteObjects", {"Bucket": bucket, "Delete": {"Objects": batch}})
        )
        if result.get("Errors"):
            first = result["Errors"][0]
            raise AwsCallFailed(
                f"s3 DeleteObjects could not delete {len(result['Errors'])} object(s), first "
                f"{first.get('Key')} ({first.get('Code')}): check s3:DeleteObject permission"
            )
