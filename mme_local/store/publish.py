"""Upload artifacts under a prefix, skipping objects whose content is already there."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mme_local.files import file_sha256
from mme_local.store.s3url import S3Prefix

# Stored on each object so a later upload can tell unchanged content without downloading it.
SHA256_METADATA = "mme-local-sha256"


@dataclass
class PublishReport:
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _remote_sha256(s3: Any, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    value = head.get("Metadata", {}).get(SHA256_METADATA)
    return str(value) if value else None


def publish(
    s3: Any,
    destination: S3Prefix,
    files: Iterable[tuple[Path, str]],
    progress: Callable[[str, str], None] | None = None,
) -> PublishReport:
    """Upload each (local file, TargetModel) pair to prefix + TargetModel unless unchanged.

    `progress(target_model, "uploaded" | "unchanged")` is called once per file.
    """
    report = PublishReport()
    for path, target_model in files:
        key = destination.key_for(target_model)
        digest = file_sha256(path)
        if _remote_sha256(s3, destination.bucket, key) == digest:
            report.unchanged.append(target_model)
            if progress:
                progress(target_model, "unchanged")
            continue
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        with path.open("rb") as body:
            s3.put_object(
                Bucket=destination.bucket,
                Key=key,
                Body=body,
                Metadata={SHA256_METADATA: digest},
                ChecksumSHA256=checksum,
            )
        report.uploaded.append(target_model)
        if progress:
            progress(target_model, "uploaded")
    return report


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the bucket if it does not exist (for the embedded store and MinIO)."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
