"""Where weight files live, behind one interface: the local filesystem (the
embedded default) or an S3-compatible bucket. Backend errors surface as
``StorageError``.

Both backends offer ``put_file(key, source, progress=)`` (reads the source once,
computing sha256 and md5 on the way), ``read_range(key, start, length)`` (what a recipient's
marked copy is made from), ``stat(key)`` and ``delete(key)``. The local
backend adds ``path(key)`` for the gateway to stream from (or hand to nginx); the
S3 backend adds ``presigned_get_url`` for the gateway to redirect to, since the
bucket stays private."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from django.conf import settings

CHUNK_BYTES = 8 << 20
PRESIGNED_REUSE_SECONDS = 60
PRESIGNED_CACHE_SIZE = 10_000
Progress = Callable[[int], object]


class StorageError(Exception):
    """Any failure of the storage backend, with a message an operator can act on."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    md5: str


class _HashingReader:
    """A read-only file wrapper that hashes what passes through it, so a file is read once."""

    def __init__(self, raw, progress: Progress | None = None):
        self._raw = raw
        self._progress = progress
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.sha256.update(data)
            self.md5.update(data)
            self.size += len(data)
            if self._progress is not None:
                self._progress(len(data))
        return data

    def stored(self, key: str) -> StoredObject:
        return StoredObject(key=key, size=self.size, sha256=self.sha256.hexdigest(), md5=self.md5.hexdigest())


def _write_beside(target: Path, reader: _HashingReader, key: str, *, mode: int | None = None) -> StoredObject:
    """Write what ``reader`` yields to a temporary file beside ``target``, then rename it over
    ``target``: a reader of ``target`` never sees half a file. ``mode``: the file's permissions
    (NamedTemporaryFile makes it private, 0600)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
        ) as out:
            temp_name = out.name
            while block := reader.read(CHUNK_BYTES):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temp_name, mode)
        os.replace(temp_name, target)
        temp_name = None
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
    return reader.stored(key)


def key_check(key: str) -> PurePosixPath:
    """A storage key as a relative path that stays inside the storage root; StorageError otherwise."""
    parts = key.split("/")
    if "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"refusing storage key {key!r}: keys are relative paths without '..'")
    return PurePosixPath(*parts)


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

    def path(self, key: str) -> Path:
        path = self.root.joinpath(*key_check(key).parts)
        # A symlink inside the root must not lead out of it either.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StorageError(f"refusing storage key {key!r}: it leads outside {self.root}")
        return path

    def put_file(self, key: str, source: Path, *, progress: Progress | None = None) -> StoredObject:
        target = self.path(key)
        try:
            with open(source, "rb") as raw:
                # Readable by others: nginx serving X-Accel-Redirect must read it.
                return _write_beside(target, _HashingReader(raw, progress), key, mode=0o644)
        except OSError as exc:
            raise StorageError(f"could not store {source} as {target}: {exc.strerror or exc}") from exc

    def get_file(self, key: str, target: Path, *, progress: Progress | None = None) -> StoredObject:
        """Copy the object to ``target`` (written beside it and renamed), hashing it on the way."""
        source = self.path(key)
        try:
            with open(source, "rb") as raw:
                return _write_beside(Path(target), _HashingReader(raw, progress), key)
        except OSError as exc:
            raise StorageError(f"could not copy {source} to {target}: {exc.strerror or exc}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """length bytes of the object from start (fewer at its end)."""
        try:
            with open(self.path(key), "rb") as raw:
                return os.pread(raw.fileno(), length, start)
        except OSError as exc:
            raise StorageError(f"could not read {self.path(key)}: {exc.strerror or exc}") from exc

    def stat(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"could not read {self.path(key)}: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {self.path(key)}: {exc.strerror}") from exc


class S3WeightStorage:
    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id,
        secret_access_key,
        multipart_threshold_mb: int = 64,
    ):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self._presigned: dict[tuple[str, str, int], tuple[float, str]] = {}  # -> (signed at, URL)
        self._presigned_lock = threading.Lock()
        self.multipart_threshold = multipart_threshold_mb << 20
        # MinIO and other S3-compatible servers behind a custom endpoint expect path-style URLs;
        # SigV4 everywhere (presigned URLs default to the legacy SigV2, which AWS is retiring).
        common = {"signature_version": "s3v4", "s3": {"addressing_style": "path"} if endpoint_url else {}}
        options = dict(
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )
        # The health check must answer fast; uploads of 16 GB shards may wait on the server and retry.
        self.client = boto3.client(
            "s3", **options, config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}, **common)
        )
        self.transfer_client = boto3.client(
            "s3",
            **options,
            config=Config(connect_timeout=5, read_timeout=120, retries={"mode": "standard", "max_attempts": 5}, **common),
        )

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc

    def put_file(self, key: str, source: Path, *, progress: Progress | None = None) -> StoredObject:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        key = str(key_check(key))
        config = TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.multipart_threshold)
        try:
            with open(source, "rb") as raw:
                # The reader has no seek(), so boto3 reads it once, front to back, part by part.
                reader = _HashingReader(raw)
                self.transfer_client.upload_fileobj(
                    reader,
                    self.bucket,
                    key,
                    ExtraArgs={"ContentType": "application/octet-stream"},
                    Config=config,
                    Callback=progress,
                )
        except OSError as exc:
            raise StorageError(f"could not read {source}: {exc.strerror or exc}") from exc
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not upload {source} to s3://{self.bucket}/{key}: {exc}") from exc
        stored = reader.stored(key)
        if self.stat(key) != stored.size:
            raise StorageError(f"s3://{self.bucket}/{key} does not have the {stored.size} bytes just uploaded")
        return stored

    def get_file(self, key: str, target: Path, *, progress: Progress | None = None) -> StoredObject:
        """Download the object to ``target`` (written beside it and renamed), hashing it on the way."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = str(key_check(key))
        try:
            body = self.transfer_client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return _write_beside(Path(target), _HashingReader(body, progress), key)
        except OSError as exc:
            raise StorageError(f"could not write {target}: {exc.strerror or exc}") from exc
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not download s3://{self.bucket}/{key}: {exc}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """length bytes of the object from start (fewer at its end), by one ranged GET."""
        from botocore.exceptions import BotoCoreError, ClientError

        if length <= 0:
            return b""
        try:
            response = self.transfer_client.get_object(
                Bucket=self.bucket, Key=str(key_check(key)), Range=f"bytes={start}-{start + length - 1}"
            )
            return response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise StorageError(f"could not read s3://{self.bucket}/{key}: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"could not read s3://{self.bucket}/{key}: {exc}") from exc

    def stat(self, key: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.transfer_client.head_object(Bucket=self.bucket, Key=str(key_check(key)))["ContentLength"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"could not look up s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not look up s3://{self.bucket}/{key}: {exc}") from exc

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.transfer_client.delete_object(Bucket=self.bucket, Key=str(key_check(key)))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete s3://{self.bucket}/{key}: {exc}") from exc

    def presigned_get_url(self, key: str, *, filename: str, expires_in: int, byte_range: str | None = None) -> str:
        """A GET URL for one object, valid expires_in seconds, that saves as filename.

        ``byte_range`` (``bytes=FIRST-LAST``) is signed into the URL: S3 then serves that range
        only, to a client that sends that same Range header, and refuses any other request with
        the URL. A URL signed moments ago for the same whole-object arguments is handed out
        again while it has at least expires_in - PRESIGNED_REUSE_SECONDS left (less for very
        short lifetimes, see below)."""
        if expires_in <= 0:
            raise ValueError("expires_in must be positive")
        if byte_range is not None:
            return self._presign(key, filename=filename, expires_in=expires_in, byte_range=byte_range)
        # Signing costs about half a millisecond, a large part of a whole gateway request, and a
        # URL grants nothing beyond the object the gateway has just allowed, so every link
        # request for one file within a minute may share one. Never more than half the
        # lifetime, so a short-lived URL is not handed out nearly spent.
        cache_key = (key, filename, expires_in)
        reuse = min(PRESIGNED_REUSE_SECONDS, expires_in // 2)
        # The signature's X-Amz-Date is wall-clock time in whole seconds, never before this.
        signed_at = float(int(time.time()))
        with self._presigned_lock:
            cached = self._presigned.get(cache_key)
        if cached is not None and 0 <= time.time() - cached[0] <= reuse:
            return cached[1]
        url = self._presign(key, filename=filename, expires_in=expires_in)
        with self._presigned_lock:
            if len(self._presigned) >= PRESIGNED_CACHE_SIZE:
                self._presigned.clear()  # rarely reached: one entry per file asked for within a minute
            self._presigned[cache_key] = (signed_at, url)
        return url

    def _presign(self, key: str, *, filename: str, expires_in: int, byte_range: str | None = None) -> str:
        safe_name = "".join(c for c in filename if c.isprintable() and c not in '"\\') or "download"
        params = {
            "Bucket": self.bucket,
            "Key": str(key_check(key)),
            "ResponseContentDisposition": f'attachment; filename="{safe_name}"',
        }
        if byte_range is not None:
            params["Range"] = byte_range  # a header botocore signs (X-Amz-SignedHeaders: host;range)
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)


@cache
def weight_storage():
    if settings.PORTAL_STORAGE_BACKEND == "s3":
        return S3WeightStorage(
            bucket=settings.S3_BUCKET,
            endpoint_url=settings.S3_ENDPOINT_URL,
            region=settings.S3_REGION,
            access_key_id=settings.S3_ACCESS_KEY_ID,
            secret_access_key=settings.S3_SECRET_ACCESS_KEY,
            multipart_threshold_mb=settings.S3_MULTIPART_THRESHOLD_MB,
        )
    return LocalWeightStorage(settings.PORTAL_STORAGE_ROOT)
