"""Distinct artifacts behind a folder or a prefix, and the trace setting."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.sources import from_folder, from_prefix
from mme_local.config_file import load_settings
from mme_local.settings import EmulatorSettings
from mme_local.store.publish import publish
from mme_local.store.s3url import S3Prefix


def _archives(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    first, second = folder / "a.tar.gz", folder / "b.tar.gz"
    first.write_bytes(b"one model")
    second.write_bytes(b"another model")
    return first, second


def test_a_folder_groups_copies_by_content(tmp_path: Path) -> None:
    first, _ = _archives(tmp_path / "src")
    (tmp_path / "src" / "a-copy.tar.gz").write_bytes(first.read_bytes())
    groups = {tuple(d.target_models) for d in from_folder(tmp_path / "src")}
    assert groups == {("a-copy.tar.gz", "a.tar.gz"), ("b.tar.gz",)}


def test_an_empty_folder_gets_one_line(tmp_path: Path) -> None:
    with pytest.raises(CapacityError, match="holds no"):
        from_folder(tmp_path)


def test_a_prefix_downloads_each_content_once(tmp_path: Path) -> None:
    first, second = _archives(tmp_path / "src")
    prefix = S3Prefix.parse("s3://bucket/models/")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        publish(s3, prefix, [(first, f"copy-{i}.tar.gz") for i in range(5)])
        # objects published by other tools carry no sha256: grouped by size and ETag
        for i in range(3):
            s3.put_object(Bucket="bucket", Key=f"models/raw-{i}.tar.gz", Body=second.read_bytes())
        messages: list[str] = []
        work = tmp_path / "work"
        work.mkdir()
        distinct = from_prefix(s3, prefix, work, messages.append)
    by_count = sorted(distinct, key=lambda d: len(d.target_models))
    assert [len(d.target_models) for d in by_count] == [3, 5]
    assert by_count[0].path.read_bytes() == second.read_bytes()
    assert by_count[1].path.read_bytes() == first.read_bytes()
    assert len(messages) == 2


def test_the_trace_file_is_a_local_setting(tmp_path: Path) -> None:
    config = tmp_path / "mme.toml"
    config.write_text('[local]\ntrace = "trace.jsonl"\n')
    settings = load_settings(EmulatorSettings, {}, config, {}, {})
    assert settings.trace_file == tmp_path / "trace.jsonl"
