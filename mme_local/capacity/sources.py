"""The distinct artifacts behind a folder or an S3 prefix: the same bytes are profiled once.

Objects published by mme-local carry their sha256 in metadata; others are grouped by size and
ETag first, so 200 copies of one artifact are downloaded once to be hashed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mme_local.capacity.errors import CapacityError
from mme_local.files import file_sha256
from mme_local.store.publish import SHA256_METADATA
from mme_local.store.s3url import S3Prefix

Progress = Callable[[str], None]


@dataclass
class Distinct:
    sha256: str
    path: Path
    """A local copy of the bytes."""
    target_models: list[str] = field(default_factory=list)


def from_folder(folder: Path) -> list[Distinct]:
    """Every *.tar.gz in `folder`, grouped by content; each TargetModel is its file name."""
    archives = sorted(folder.glob("*.tar.gz"))
    if not archives:
        raise CapacityError(f"{folder} holds no *.tar.gz artifacts to profile")
    groups: dict[str, Distinct] = {}
    for path in archives:
        sha = file_sha256(path)
        groups.setdefault(sha, Distinct(sha, path)).target_models.append(path.name)
    return list(groups.values())


def from_prefix(s3: Any, prefix: S3Prefix, workdir: Path, progress: Progress) -> list[Distinct]:
    """Every object under `prefix`, grouped by content; one copy of each is downloaded."""
    paginator = s3.get_paginator("list_objects_v2")
    objects = [
        item
        for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.prefix)
        for item in page.get("Contents", [])
        if item["Key"] != prefix.prefix
    ]
    if not objects:
        raise CapacityError(f"{prefix.url()} holds no objects to profile")
    by_sha: dict[str, Distinct] = {}
    by_etag: dict[tuple[int, str], str] = {}
    for item in objects:
        key, target = item["Key"], item["Key"][len(prefix.prefix) :]
        sha = s3.head_object(Bucket=prefix.bucket, Key=key).get("Metadata", {}).get(SHA256_METADATA)
        identity = (int(item["Size"]), str(item.get("ETag", "")))
        if not sha and identity in by_etag:
            sha = by_etag[identity]
        if not sha or sha not in by_sha:
            path = workdir / f"{len(by_sha)}.tar.gz"
            progress(f"downloading {target} to hash it")
            s3.download_file(prefix.bucket, key, str(path))
            sha = file_sha256(path)
            if sha not in by_sha:
                by_sha[sha] = Distinct(sha, path)
        by_etag[identity] = sha
        by_sha[sha].target_models.append(target)
    return list(by_sha.values())
