"""Publishing never silently replaces a model; uploads report bytes; deploys end with a table."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from cloud.aws import Clients
from cloud.deploy import Change, Deployer, Hooks
from cloud.errors import ArtifactConflict
from cloud.plan import DeployRequest, build_plan
from mme_local.store.publish import ArtifactChanged, publish, versioned_name
from mme_local.store.s3url import S3Prefix
from tests.unit.test_cloud import (
    BUCKET,
    INSTANCE,
    PREFIX_URL,
    ROLE,
    artifacts_dir,
    deploy_args,
    run_cli,
    s3_keys,
    write_artifact,
)


def body(key: str) -> bytes:
    s3 = boto3.client("s3", region_name="us-east-1")
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def test_publish_refuses_a_changed_object_and_uploads_nothing(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    prefix = S3Prefix.parse(PREFIX_URL)
    folder = artifacts_dir(tmp_path)
    publish(s3, prefix, [(folder / "model-0.tar.gz", "model-0.tar.gz")])
    first = body("models/model-0.tar.gz")
    write_artifact(folder / "model-0.tar.gz", b"retrained")
    files = [
        (folder / "model-1.tar.gz", "model-1.tar.gz"),
        (folder / "model-0.tar.gz", "model-0.tar.gz"),
    ]
    with pytest.raises(ArtifactChanged) as raised:
        publish(s3, prefix, files, overwrite=False)
    message = str(raised.value)
    assert message.startswith(f"{PREFIX_URL}model-0.tar.gz already holds different content")
    assert "--versioned-names" in message
    assert message.endswith("or pass --overwrite to replace it")
    assert body("models/model-0.tar.gz") == first
    assert s3_keys() == ["models/model-0.tar.gz"]

    report = publish(s3, prefix, files, overwrite=True)
    assert (report.uploaded, report.replaced) == (["model-1.tar.gz"], ["model-0.tar.gz"])
    assert body("models/model-0.tar.gz") == (folder / "model-0.tar.gz").read_bytes()


def test_an_object_of_unknown_content_counts_as_changed(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key="models/model-0.tar.gz", Body=b"uploaded by hand")
    folder = artifacts_dir(tmp_path)
    with pytest.raises(ArtifactChanged):
        publish(
            s3,
            S3Prefix.parse(PREFIX_URL),
            [(folder / "model-0.tar.gz", "model-0.tar.gz")],
            overwrite=False,
        )


def test_deploy_refuses_then_overwrite_or_versioned_names(aws: None, tmp_path: Path) -> None:
    folder = artifacts_dir(tmp_path)
    assert run_cli(deploy_args("--artifacts", str(folder))).exit_code == 0
    write_artifact(folder / "model-1.tar.gz", b"retrained")

    refused = run_cli(deploy_args("--artifacts", str(folder)))
    assert isinstance(refused.exception, ArtifactConflict)
    assert str(refused.exception).startswith(f"{PREFIX_URL}model-1.tar.gz already holds")

    versioned = run_cli(deploy_args("--artifacts", str(folder), "--versioned-names"))
    assert versioned.exit_code == 0, versioned.output
    new_key = "models/" + versioned_name(folder / "model-1.tar.gz")
    assert new_key in s3_keys()
    assert body("models/model-1.tar.gz") != (folder / "model-1.tar.gz").read_bytes()

    replaced = run_cli(deploy_args("--artifacts", str(folder), "--overwrite"))
    assert replaced.exit_code == 0, replaced.output
    assert body("models/model-1.tar.gz") == (folder / "model-1.tar.gz").read_bytes()
    assert re.search(r"^artifact +model-1\.tar\.gz +updated$", replaced.output, re.MULTILINE)


def test_uploads_report_every_byte_and_the_summary_says_what_happened(
    aws: None, tmp_path: Path
) -> None:
    folder = artifacts_dir(tmp_path)
    request = DeployRequest(
        "demo-mme", ROLE, PREFIX_URL, INSTANCE, "us-east-1", artifacts_dir=folder
    )
    sent: list[int] = []
    waits: list[tuple[str, float]] = []
    hooks = Hooks(bytes_sent=sent.append, waiting=lambda s, t: waits.append((s, t)))
    clients = Clients.for_session(boto3.Session(region_name="us-east-1"))
    outcome = Deployer(build_plan(request), clients, hooks, poll_s=0).run()
    assert sum(sent) == sum(p.stat().st_size for p in folder.glob("*.tar.gz"))
    assert waits and waits[-1][0] == "InService"
    plan = build_plan(request)
    assert outcome.summary == [
        Change("artifact", "model-0.tar.gz", "created"),
        Change("artifact", "model-1.tar.gz", "created"),
        Change("model", plan.model_name, "created"),
        Change("endpoint config", plan.config_name, "created"),
        Change("endpoint", "demo-mme", "created"),
    ]
    again = Deployer(build_plan(request), clients, poll_s=0).run()
    assert {c.action for c in again.summary} == {"skipped"}

    result = run_cli(deploy_args("--artifacts", str(folder)))
    assert result.output.rstrip().endswith("5 skipped")
