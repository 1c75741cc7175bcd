"""Weight storage backends: local filesystem and S3 (a moto server on loopback)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from access.distribution.storage import StorageError, weight_storage


def _random_file(path, size: int):
    path.write_bytes(os.urandom(size))
    return path


def _digests(path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), hashlib.md5(data, usedforsecurity=False).hexdigest()


# Local filesystem


def test_local_put_file_stores_the_bytes_and_reports_their_checksums(local_storage, tmp_path):
    source = _random_file(tmp_path / "shard.pth", 3 * 1024 * 1024 + 17)
    seen = []

    stored = local_storage.put_file("llama-7b/consolidated.00.pth", source, progress=seen.append)

    target = local_storage.path("llama-7b/consolidated.00.pth")
    assert target.read_bytes() == source.read_bytes()
    assert (stored.sha256, stored.md5) == _digests(source)
    assert stored.size == source.stat().st_size == local_storage.stat("llama-7b/consolidated.00.pth")
    assert stored.key == "llama-7b/consolidated.00.pth"
    assert sum(seen) == stored.size
    # Readable by a web server handing the file out with X-Accel-Redirect.
    assert target.stat().st_mode & 0o777 == 0o644


def test_local_put_file_replaces_an_existing_file(local_storage, tmp_path):
    local_storage.put_file("v/params.json", _random_file(tmp_path / "old", 100))
    new = _random_file(tmp_path / "new", 50)

    stored = local_storage.put_file("v/params.json", new)

    assert local_storage.path("v/params.json").read_bytes() == new.read_bytes()
    assert stored.size == 50
    assert [p.name for p in local_storage.path("v/params.json").parent.iterdir()] == ["params.json"]


def test_local_failed_put_file_keeps_the_old_file_and_leaves_no_partial_file(local_storage, tmp_path):
    old = _random_file(tmp_path / "old", 100)
    local_storage.put_file("v/tokenizer.model", old)
    not_a_file = tmp_path / "a-folder"
    not_a_file.mkdir()

    with pytest.raises(StorageError, match="could not store"):
        local_storage.put_file("v/tokenizer.model", not_a_file)

    assert local_storage.path("v/tokenizer.model").read_bytes() == old.read_bytes()
    assert [p.name for p in local_storage.path("v/tokenizer.model").parent.iterdir()] == ["tokenizer.model"]


def test_local_stat_and_delete(local_storage, tmp_path):
    local_storage.put_file("v/a.bin", _random_file(tmp_path / "a", 10))

    local_storage.delete("v/a.bin")

    assert local_storage.stat("v/a.bin") is None
    assert not local_storage.path("v/a.bin").exists()
    local_storage.delete("v/a.bin")  # deleting what is gone is not an error


@pytest.mark.parametrize("key", ["../secret", "v/../../secret", "/etc/passwd", "", "v\\..\\x", "./v/a", "v//a"])
def test_local_storage_refuses_keys_that_escape_its_root(local_storage, tmp_path, key):
    with pytest.raises(StorageError, match="refusing storage key"):
        local_storage.path(key)
    with pytest.raises(StorageError, match="refusing storage key"):
        local_storage.put_file(key, _random_file(tmp_path / "x", 1))
    assert not (tmp_path / "secret").exists()


def test_local_storage_refuses_a_symlink_out_of_its_root(local_storage, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    local_storage.root.mkdir(parents=True, exist_ok=True)
    (local_storage.root / "v").symlink_to(outside)

    with pytest.raises(StorageError, match="outside"):
        local_storage.put_file("v/a.bin", _random_file(tmp_path / "a", 10))
    assert list(outside.iterdir()) == []


def test_local_storage_is_the_default_backend(settings, tmp_path):
    settings.PORTAL_STORAGE_BACKEND = "local"
    settings.PORTAL_STORAGE_ROOT = str(tmp_path)
    weight_storage.cache_clear()
    try:
        assert weight_storage().name == "local"
    finally:
        weight_storage.cache_clear()


# S3 (moto server on loopback)


def _fetch(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback test server)
        return response.read(), response.headers


def test_s3_put_file_uploads_the_bytes_and_a_presigned_url_downloads_them(s3_storage, tmp_path):
    source = _random_file(tmp_path / "params.json", 4096)
    seen = []

    stored = s3_storage.put_file("llama-7b/params.json", source, progress=seen.append)

    assert s3_storage.name == "s3"
    assert (stored.sha256, stored.md5) == _digests(source)
    assert stored.size == 4096 == s3_storage.stat("llama-7b/params.json")
    assert sum(seen) == 4096
    url = s3_storage.presigned_get_url("llama-7b/params.json", filename="params.json", expires_in=900)
    body, headers = _fetch(url)
    assert body == source.read_bytes()
    assert headers["Content-Disposition"] == 'attachment; filename="params.json"'
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["900"]


def test_s3_large_file_goes_up_in_parts(s3_storage, settings, tmp_path):
    settings.S3_MULTIPART_THRESHOLD_MB = 5
    weight_storage.cache_clear()
    storage = weight_storage()
    source = _random_file(tmp_path / "consolidated.00.pth", 11 * 1024 * 1024)
    seen = []

    stored = storage.put_file("llama-7b/consolidated.00.pth", source, progress=seen.append)

    head = storage.client.head_object(Bucket=storage.bucket, Key="llama-7b/consolidated.00.pth")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB: a multipart upload
    assert (stored.sha256, stored.md5) == _digests(source)
    assert sum(seen) == stored.size == source.stat().st_size
    body, _ = _fetch(storage.presigned_get_url("llama-7b/consolidated.00.pth", filename="c.pth", expires_in=60))
    assert hashlib.sha256(body).hexdigest() == stored.sha256


def test_s3_stat_and_delete(s3_storage, tmp_path):
    s3_storage.put_file("v/a.bin", _random_file(tmp_path / "a", 10))

    s3_storage.delete("v/a.bin")

    assert s3_storage.stat("v/a.bin") is None
    s3_storage.delete("v/a.bin")


def test_s3_presigned_url_names_the_file_safely(s3_storage, tmp_path):
    s3_storage.put_file("v/a.bin", _random_file(tmp_path / "a", 10))

    url = s3_storage.presigned_get_url("v/a.bin", filename='evil"\r\nX-Injected: 1.bin', expires_in=60)

    _, headers = _fetch(url)
    assert headers["Content-Disposition"] == 'attachment; filename="evilX-Injected: 1.bin"'
    assert "X-Injected" not in headers


def test_s3_errors_surface_as_storage_errors(s3_storage, settings, tmp_path):
    settings.S3_BUCKET = "no-such-bucket"
    weight_storage.cache_clear()
    storage = weight_storage()

    with pytest.raises(StorageError, match="no-such-bucket"):
        storage.put_file("v/a.bin", _random_file(tmp_path / "a", 10))
    with pytest.raises(StorageError, match="not reachable"):
        storage.check()


def test_s3_storage_refuses_keys_with_dot_dot(s3_storage, tmp_path):
    with pytest.raises(StorageError, match="refusing storage key"):
        s3_storage.put_file("../other-bucket/a", _random_file(tmp_path / "a", 1))
