"""Seeding the prefix from a folder of artifacts when an endpoint starts (`up --models`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mme_local.store.publish import publish
from mme_local.store.s3url import S3Prefix


def seed_folder(
    s3: Any,
    prefix: S3Prefix,
    folder: Path,
    progress: Callable[[str], None],
    overwrite: bool = False,
) -> None:
    """Upload every *.tar.gz in `folder` under `prefix` as its file name; unchanged ones skip.

    A changed file under an existing name is refused (ArtifactChanged) unless `overwrite`:
    instances that loaded the old bytes would keep serving them.
    """
    archives = sorted(folder.glob("*.tar.gz"))
    progress(f"publishing {len(archives)} artifact(s) from {folder} to {prefix.url()}")
    report = publish(s3, prefix, [(path, path.name) for path in archives], overwrite=overwrite)
    progress(f"{len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged")
