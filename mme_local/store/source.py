"""Reading model.tar.gz objects from any S3 API (moto, MinIO, AWS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mme_local.store.s3url import S3Prefix

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class ObjectMissing(LookupError):
    """The TargetModel has no object under the prefix."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"Failed to download model data (bucket: {bucket}, key: {key})")
        self.bucket = bucket
        self.key = key


class StoreUnavailable(RuntimeError):
    """The S3 API could not be reached or answered with a server error."""


@dataclass(frozen=True)
class Fetched:
    """What one download read: the expanded size and the object's ETag."""

    size: int
    etag: str | None


@dataclass(frozen=True)
class StoredModel:
    target_model: str
    size: int
    last_modified: datetime
    etag: str | None = None


def s3_client(endpoint_url: str | None, region: str) -> Any:
    """A boto3 S3 client; with an endpoint URL and no credentials, moto-style dummy ones."""
    session = boto3.session.Session()
    kwargs: dict[str, Any] = {}
    if endpoint_url and session.get_credentials() is None:
        kwargs = {"aws_access_key_id": "mme-local", "aws_secret_access_key": "mme-local"}
    config = Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,
        # MinIO and moto want path-style URLs; AWS itself picks its own style.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return session.client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config, **kwargs
    )


class ModelStore:
    """The ModelDataUrl prefix: what TargetModels exist and their bytes."""

    def __init__(self, client: Any, prefix: S3Prefix) -> None:
        self.client = client
        self.prefix = prefix

    def open(self, target_model: str) -> tuple[IO[bytes], str | None]:
        """A streaming body for prefix + TargetModel and its ETag."""
        key = self.prefix.key_for(target_model)
        try:
            response = self.client.get_object(Bucket=self.prefix.bucket, Key=key)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ObjectMissing(self.prefix.bucket, key) from error
            raise StoreUnavailable(
                f"S3 GET s3://{self.prefix.bucket}/{key} failed: {error}"
            ) from error
        except BotoCoreError as error:
            raise StoreUnavailable(
                f"S3 GET s3://{self.prefix.bucket}/{key} failed: {error}"
            ) from error
        return response["Body"], response.get("ETag")

    def stat(self, target_model: str) -> tuple[int, str | None]:
        """The object's size in bytes and its ETag, without reading it."""
        key = self.prefix.key_for(target_model)
        try:
            response = self.client.head_object(Bucket=self.prefix.bucket, Key=key)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ObjectMissing(self.prefix.bucket, key) from error
            raise StoreUnavailable(
                f"S3 HEAD s3://{self.prefix.bucket}/{key} failed: {error}"
            ) from error
        except BotoCoreError as error:
            raise StoreUnavailable(
                f"S3 HEAD s3://{self.prefix.bucket}/{key} failed: {error}"
            ) from error
        return int(response["ContentLength"]), response.get("ETag")

    def read_with(self, target_model: str, consume: Callable[[IO[bytes]], int]) -> Fetched:
        """Stream the object into `consume` (which returns the expanded size), turning
        transport failures into StoreUnavailable."""
        body, etag = self.open(target_model)
        try:
            return Fetched(consume(body), etag)
        except BotoCoreError as error:
            raise StoreUnavailable(f"S3 read of {target_model!r} failed: {error}") from error
        finally:
            body.close()

    def list_models(self) -> list[StoredModel]:
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        try:
            for page in paginator.paginate(Bucket=self.prefix.bucket, Prefix=self.prefix.prefix):
                for item in page.get("Contents", []):
                    target = item["Key"][len(self.prefix.prefix) :]
                    if target:
                        found.append(
                            StoredModel(
                                target, int(item["Size"]), item["LastModified"], item.get("ETag")
                            )
                        )
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"listing {self.prefix.url()} failed: {error}") from error
        return found
