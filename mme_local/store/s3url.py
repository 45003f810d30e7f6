"""`s3://bucket/prefix/` URLs, as ModelDataUrl uses them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class InvalidS3Url(ValueError):
    """Not an s3://bucket/prefix/ URL with a valid bucket name."""


@dataclass(frozen=True)
class S3Prefix:
    bucket: str
    prefix: str
    """Key prefix, empty or ending in '/'."""

    @classmethod
    def parse(cls, url: str) -> S3Prefix:
        if not url.startswith("s3://"):
            raise InvalidS3Url(f"{url!r} is not an s3:// URL (expected s3://bucket/prefix/)")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise InvalidS3Url(f"{bucket!r} in {url!r} is not a valid S3 bucket name")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)

    def key_for(self, target_model: str) -> str:
        return self.prefix + target_model

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
