"""`up --models`: seeding the prefix never silently replaces a changed model."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from mme_local.store.publish import ArtifactChanged
from mme_local.store.s3url import S3Prefix
from mme_local.store.seed import seed_folder


@mock_aws
def test_a_changed_file_under_a_published_name_is_refused_unless_overwrite(
    tmp_path: Path,
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    prefix = S3Prefix.parse("s3://models/mme/")
    (tmp_path / "a.tar.gz").write_bytes(b"first")
    said: list[str] = []
    seed_folder(s3, prefix, tmp_path, said.append)
    seed_folder(s3, prefix, tmp_path, said.append)
    assert said[-1] == "0 uploaded, 1 unchanged"

    (tmp_path / "a.tar.gz").write_bytes(b"second")
    with pytest.raises(ArtifactChanged, match=r"a\.tar\.gz"):
        seed_folder(s3, prefix, tmp_path, said.append)
    assert s3.get_object(Bucket="models", Key="mme/a.tar.gz")["Body"].read() == b"first"

    seed_folder(s3, prefix, tmp_path, said.append, overwrite=True)
    assert s3.get_object(Bucket="models", Key="mme/a.tar.gz")["Body"].read() == b"second"
