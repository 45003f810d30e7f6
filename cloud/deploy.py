"""Make AWS match a DeployPlan: upload, model, endpoint config, endpoint; idempotent."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cloud.aws import Clients, explain, is_not_found
from cloud.errors import ArtifactConflict, AwsCallFailed, DeployTimeout, EndpointFailed
from cloud.plan import HASH_LENGTH, OWNER_TAG, AwsCall, DeployPlan
from mme_local.store.publish import ArtifactChanged, publish

_SETTLED_BAD = {"Failed", "OutOfService", "UpdateRollbackFailed"}


def _quiet(*_: object) -> None:
    return None


@dataclass
class Hooks:
    say: Callable[[str], None] = _quiet
    """One line of news (created X, waiting for Y)."""
    uploaded: Callable[[str, str], None] = _quiet
    """(TargetModel, "uploaded" | "unchanged") once per artifact."""
    status: Callable[[str, float], None] = _quiet
    """(EndpointStatus, seconds waited) whenever the status changes."""
    waiting: Callable[[str, float], None] = _quiet
    """(EndpointStatus, seconds waited) at every poll, for a live elapsed-time display."""
    bytes_sent: Callable[[int], None] = _quiet
    """Bytes of artifact just sent (uploads report as they go)."""


@dataclass(frozen=True)
class Change:
    kind: str
    """"artifact", "model", "endpoint config" or "endpoint"."""
    name: str
    action: str
    """"created", "updated", "deleted" or "skipped" (already as wanted)."""


@dataclass
class DeployOutcome:
    endpoint_name: str
    model_name: str
    config_name: str
    status: str
    changes: list[str] = field(default_factory=list)
    """What this run changed in AWS; empty when everything already matched."""
    summary: list[Change] = field(default_factory=list)
    """Every resource this run looked at and what it did to it."""


class AwsExecutor:
    """Runs AwsCalls on real clients and turns every failure into one actionable line."""

    def __init__(self, clients: Clients) -> None:
        self._clients = {"sagemaker": clients.sagemaker, "s3": clients.s3}
        self._clients["sagemaker-runtime"] = clients.runtime

    def __call__(self, call: AwsCall, missing_ok: bool = False) -> dict[str, Any] | None:
        client = self._clients[call.service]
        try:
            result: dict[str, Any] = getattr(client, call.method)(**call.params)
        except ClientError as error:
            if missing_ok and is_not_found(error):
                return None
            raise explain(f"{call.service} {call.operation}", error) from error
        except BotoCoreError as error:
            raise explain(f"{call.service} {call.operation}", error) from error
        return result

    def must(self, call: AwsCall) -> dict[str, Any]:
        result = self(call)
        assert result is not None
        return result


class Deployer:
    def __init__(
        self,
        plan: DeployPlan,
        clients: Clients,
        hooks: Hooks | None = None,
        poll_s: float = 15.0,
        timeout_s: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.clients = clients
        self.hooks = hooks or Hooks()
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._aws = AwsExecutor(clients)
        self._changes: list[str] = []
        self._summary: list[Change] = []

    @property
    def _endpoint(self) -> str:
        return self.plan.request.endpoint_name

    def run(self, wait: bool = True) -> DeployOutcome:
        try:
            self._upload()
            self._ensure_model()
            self._ensure_config()
            described = self._ensure_endpoint()
            if wait:
                described = self._wait_in_service()
            if described["EndpointStatus"] == "InService":
                self._delete_superseded()
        except (AwsCallFailed, EndpointFailed, DeployTimeout, ArtifactConflict) as error:
            if not self._changes:
                raise
            raise type(error)(f"{error}\n{self._left_behind()}") from error
        return DeployOutcome(
            self._endpoint,
            self.plan.model_name,
            self.plan.config_name,
            str(described["EndpointStatus"]),
            self._changes,
            self._summary,
        )

    def _left_behind(self) -> str:
        """What this run created before it failed, and the two ways on from there."""
        uploaded = any(c.kind == "artifact" and c.action != "skipped" for c in self._summary)
        remove = f"mme-local teardown {self._endpoint}"
        if uploaded:
            remove += " --delete-artifacts"
        lines = ["this run already did:", *(f"  {change}" for change in self._changes)]
        lines.append("to finish: fix the cause and run the same deploy again (it carries on)")
        lines.append(f"to remove what it made: {remove}")
        return "\n".join(lines)

    def _changed(self, what: str, change: Change | None = None) -> None:
        self._changes.append(what)
        self.hooks.say(what)
        if change is not None:
            self._summary.append(change)

    def _skipped(self, kind: str, name: str) -> None:
        self._summary.append(Change(kind, name, "skipped"))

    def _upload(self) -> None:
        if not self.plan.artifacts:
            return
        prefix = self.plan.prefix
        self._aws.must(AwsCall("s3", "HeadBucket", {"Bucket": prefix.bucket}))
        request = self.plan.request
        try:
            report = publish(
                self.clients.s3,
                prefix,
                self.plan.artifacts,
                self.hooks.uploaded,
                overwrite=request.overwrite,
                owner=request.endpoint_name,
                on_bytes=self.hooks.bytes_sent,
            )
        except ArtifactChanged as error:
            raise ArtifactConflict(str(error)) from error
        except (ClientError, BotoCoreError) as error:
            raise explain(f"s3 PutObject to {prefix.url()}", error) from error
        self._summary += [Change("artifact", t, "created") for t in report.uploaded]
        self._summary += [Change("artifact", t, "updated") for t in report.replaced]
        self._summary += [Change("artifact", t, "skipped") for t in report.unchanged]
        if report.uploaded:
            self._changed(f"uploaded {len(report.uploaded)} artifact(s) to {prefix.url()}")
        if report.replaced:
            self._changed(f"replaced {len(report.replaced)} changed artifact(s) (--overwrite)")

    def _ensure_model(self) -> None:
        name = self.plan.model_name
        if self._aws(self.plan.describe("DescribeModel", "ModelName", name), missing_ok=True):
            self._skipped("model", name)
            return
        self._aws.must(self.plan.create_model())
        self._changed(f"created model {name}", Change("model", name, "created"))

    def _ensure_config(self) -> None:
        name = self.plan.config_name
        describe = self.plan.describe("DescribeEndpointConfig", "EndpointConfigName", name)
        if self._aws(describe, missing_ok=True):
            self._skipped("endpoint config", name)
            return
        self._aws.must(self.plan.create_endpoint_config())
        self._changed(f"created endpoint config {name}", Change("endpoint config", name, "created"))

    def _describe_endpoint(self, missing_ok: bool = False) -> dict[str, Any] | None:
        call = self.plan.describe("DescribeEndpoint", "EndpointName", self._endpoint)
        return self._aws(call, missing_ok=missing_ok)

    def _ensure_endpoint(self) -> dict[str, Any]:
        described = self._describe_endpoint(missing_ok=True)
        if described is None:
            self._aws.must(self.plan.create_endpoint())
            self._changed(
                f"created endpoint {self._endpoint}", Change("endpoint", self._endpoint, "created")
            )
            return {"EndpointStatus": "Creating"}
        status = str(described["EndpointStatus"])
        current = str(described["EndpointConfigName"])
        if status in _SETTLED_BAD:
            raise EndpointFailed(self._failure_text(described))
        if current == self.plan.config_name:
            self._skipped("endpoint", self._endpoint)
            return described
        if status != "InService":
            raise AwsCallFailed(
                f"endpoint {self._endpoint} is {status} (config {current}): wait until it is "
                "InService and run deploy again"
            )
        self._aws.must(self.plan.update_endpoint())
        self._changed(
            f"rolling endpoint {self._endpoint} from {current} to {self.plan.config_name}",
            Change("endpoint", self._endpoint, "updated"),
        )
        return {"EndpointStatus": "Updating"}

    def _failure_text(self, described: dict[str, Any]) -> str:
        reason = described.get("FailureReason") or "no reason given"
        return (
            f"endpoint {self._endpoint} is {described['EndpointStatus']} ({reason}): fix the "
            f"cause, run `mme-local teardown {self._endpoint}`, then deploy again"
        )

    def _wait_in_service(self) -> dict[str, Any]:
        started = time.monotonic()
        last = ""
        while True:
            described = self._describe_endpoint()
            assert described is not None
            status = str(described["EndpointStatus"])
            waited = time.monotonic() - started
            if status != last:
                self.hooks.status(status, waited)
                last = status
            self.hooks.waiting(status, waited)
            if status == "InService":
                if described["EndpointConfigName"] != self.plan.config_name:
                    raise EndpointFailed(
                        f"the update of {self._endpoint} rolled back to "
                        f"{described['EndpointConfigName']} "
                        f"({described.get('FailureReason') or 'no reason given'}): fix the cause "
                        "and run deploy again"
                    )
                return described
            if status in _SETTLED_BAD:
                raise EndpointFailed(self._failure_text(described))
            if waited > self.timeout_s:
                raise DeployTimeout(
                    f"endpoint {self._endpoint} is still {status} after {waited / 60:.0f} min; "
                    "AWS carries on: run deploy again to keep waiting"
                )
            self._sleep(self.poll_s)

    def _delete_superseded(self) -> None:
        """Delete this endpoint's older configs and models once it serves the current ones."""
        keep_config, keep_model = self.plan.config_name, self.plan.model_name
        for name in list(owned(self._aws, "EndpointConfigs", self._endpoint)):
            if name != keep_config:
                call = AwsCall("sagemaker", "DeleteEndpointConfig", {"EndpointConfigName": name})
                self._aws.must(call)
                self._changed(
                    f"deleted superseded endpoint config {name}",
                    Change("endpoint config", name, "deleted"),
                )
        for name in list(owned(self._aws, "Models", self._endpoint)):
            if name != keep_model:
                self._aws.must(AwsCall("sagemaker", "DeleteModel", {"ModelName": name}))
                self._changed(f"deleted superseded model {name}", Change("model", name, "deleted"))


_LISTINGS = {
    "EndpointConfigs": ("ListEndpointConfigs", "EndpointConfigName", "EndpointConfigArn"),
    "Models": ("ListModels", "ModelName", "ModelArn"),
}


def owned(aws: AwsExecutor, kind: str, endpoint_name: str) -> Iterator[str]:
    """Names of `kind` that the deployer made for this endpoint (derived name and owner tag)."""
    operation, name_key, arn_key = _LISTINGS[kind]
    base = endpoint_name[: 62 - HASH_LENGTH]
    pattern = re.compile(rf"^{re.escape(base)}-[0-9a-f]{{{HASH_LENGTH}}}$")
    params: dict[str, Any] = {"NameContains": base}
    while True:
        page = aws.must(AwsCall("sagemaker", operation, params))
        for item in page.get(kind, []):
            if pattern.match(item[name_key]) and owner_of(aws, item[arn_key]) == endpoint_name:
                yield str(item[name_key])
        token = page.get("NextToken")
        if not token:
            return
        params = {"NameContains": base, "NextToken": token}


def owner_of(aws: AwsExecutor, arn: str) -> str | None:
    tags = aws.must(AwsCall("sagemaker", "ListTags", {"ResourceArn": arn})).get("Tags", [])
    return next((str(t["Value"]) for t in tags if t["Key"] == OWNER_TAG), None)
