"""Upload artifacts under a prefix, skipping unchanged objects and refusing to replace changed ones.

An instance that loaded an object keeps serving the bytes it loaded, so a changed object under an
existing key leaves an endpoint serving two versions of one TargetModel; `publish` refuses that
unless told to overwrite.
"""

from __future__ import annotations

import base64
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from botocore.exceptions import ClientError

from mme_local.files import file_sha256
from mme_local.store.s3url import S3Prefix

# Stored on each object so a later upload can tell unchanged content without downloading it.
SHA256_METADATA = "mme-local-sha256"
# Stored on each object `deploy` uploads, so teardown deletes only what it put there.
OWNER_METADATA = "mme-local-endpoint"
VERSION_HASH_LENGTH = 12


class ArtifactChanged(Exception):
    """An object with other content already exists under the key; nothing was uploaded."""


@dataclass
class PublishReport:
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    """TargetModels whose changed content replaced an existing object (with overwrite)."""


@dataclass(frozen=True)
class RemoteObject:
    sha256: str | None
    owner: str | None


def head(s3: Any, bucket: str, key: str) -> RemoteObject | None:
    """The recorded digest and owner of an object; None when there is no object."""
    try:
        found = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    metadata = found.get("Metadata", {})
    return RemoteObject(metadata.get(SHA256_METADATA) or None, metadata.get(OWNER_METADATA) or None)


def versioned_name(path: Path) -> str:
    """`model-0.tar.gz` -> `model-0-<first 12 hex of sha256>.tar.gz`: new content, new name."""
    stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return f"{stem}-{file_sha256(path)[:VERSION_HASH_LENGTH]}.tar.gz"


def extracted_size(archive: Path) -> int:
    """Bytes the archive's regular files take once extracted (read from the tar headers)."""
    with tarfile.open(archive, "r:*") as tar:
        return sum(member.size for member in tar if member.isfile())


class _CountingReader:
    """A file whose reads report progress; a re-read after a retry is not counted twice."""

    def __init__(self, raw: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._reported = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        position = self._raw.tell()
        if position > self._reported:
            self._on_bytes(position - self._reported)
            self._reported = position
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def publish(
    s3: Any,
    destination: S3Prefix,
    files: Iterable[tuple[Path, str]],
    progress: Callable[[str, str], None] | None = None,
    *,
    overwrite: bool = True,
    owner: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> PublishReport:
    """Upload each (local file, TargetModel) pair to prefix + TargetModel unless unchanged.

    With `overwrite=False`, raises ArtifactChanged before uploading anything if any key holds
    other content (or content of unknown digest). `owner` is recorded on each uploaded object.
    `progress(target_model, "uploaded" | "replaced" | "unchanged")` is called once per file and
    `on_bytes(n)` as bytes go out.
    """
    pending: list[tuple[Path, str, str, RemoteObject | None]] = []
    for path, target_model in files:
        key = destination.key_for(target_model)
        pending.append((path, target_model, file_sha256(path), head(s3, destination.bucket, key)))
    if not overwrite:
        changed = [t for _, t, d, r in pending if r is not None and r.sha256 != d]
        if changed:
            raise _changed_error(destination, changed)
    report = PublishReport()
    for path, target_model, digest, remote in pending:
        if remote is not None and remote.sha256 == digest:
            report.unchanged.append(target_model)
            if progress:
                progress(target_model, "unchanged")
            continue
        _put(s3, destination, path, target_model, digest, owner, on_bytes)
        status = "uploaded" if remote is None else "replaced"
        (report.uploaded if remote is None else report.replaced).append(target_model)
        if progress:
            progress(target_model, status)
    return report


def _put(
    s3: Any,
    destination: S3Prefix,
    path: Path,
    target_model: str,
    digest: str,
    owner: str | None,
    on_bytes: Callable[[int], None] | None,
) -> None:
    metadata = {SHA256_METADATA: digest}
    if owner is not None:
        metadata[OWNER_METADATA] = owner
    checksum = base64.b64encode(bytes.fromhex(digest)).decode()
    with path.open("rb") as raw:
        body: Any = raw if on_bytes is None else _CountingReader(raw, on_bytes)
        s3.put_object(
            Bucket=destination.bucket,
            Key=destination.key_for(target_model),
            Body=body,
            Metadata=metadata,
            ChecksumSHA256=checksum,
        )


def _changed_error(destination: S3Prefix, changed: list[str]) -> ArtifactChanged:
    target = changed[0]
    suggestion = PurePosixPath(target).name.removesuffix(".tar.gz") + "-v2.tar.gz"
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return ArtifactChanged(
        f"{destination.url()}{target}{more} already holds different content; instances that "
        "loaded it would keep the old bytes: publish under a new name (--versioned-names, or "
        f"e.g. {suggestion}) or pass --overwrite to replace it"
    )


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
