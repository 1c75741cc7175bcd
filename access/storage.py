"""Where weight files live, behind one interface: the local filesystem (the
embedded default) or an S3-compatible bucket. Backend errors surface as
``StorageError``. The weight-distribution issue adds the file operations."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from django.conf import settings


class StorageError(Exception):
    """Any failure of the storage backend, with a message an operator can act on."""


class LocalWeightStorage:
    name = "local"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".healthz-"):
                pass
        except OSError as exc:
            raise StorageError(f"local storage at {self.root} is not writable: {exc.strerror}") from exc


class S3WeightStorage:
    name = "s3"

    def __init__(self, *, bucket: str, endpoint_url: str | None, region: str, access_key_id, secret_access_key):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc


@cache
def weight_storage():
    if settings.PORTAL_STORAGE_BACKEND == "s3":
        return S3WeightStorage(
            bucket=settings.S3_BUCKET,
            endpoint_url=settings.S3_ENDPOINT_URL,
            region=settings.S3_REGION,
            access_key_id=settings.S3_ACCESS_KEY_ID,
            secret_access_key=settings.S3_SECRET_ACCESS_KEY,
        )
    return LocalWeightStorage(settings.PORTAL_STORAGE_ROOT)
