"""Weight-storage fixtures shared by the download tests (registered in tests/conftest.py).

- ``local_storage``: the local backend rooted in this test's tmp_path.
- ``s3_server``: one moto S3 server on loopback for the whole session; yields its endpoint URL.
- ``s3_storage``: the S3 backend pointed at a fresh, private bucket on that server.
- ``demo_checkpoint``: a tiny llama-demo-tiny checkpoint (2 shards), made once per session. Treat it
  as read-only: copy it (``shutil.copytree``) before changing it.
- ``published_demo_weights``: that checkpoint published with ``weights_publish`` to the storage the
  test uses (``s3_storage`` when the test asks for it, else ``local_storage``); returns
  ``(variant, source_dir, weight_files)``.

``weight_storage()`` is cached per process, so every fixture that changes storage settings clears
that cache before and after the test.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from access.distribution.storage import weight_storage

S3_TEST_REGION = "us-east-1"
S3_TEST_ACCESS_KEY_ID = "testing-access-key"
S3_TEST_SECRET_ACCESS_KEY = "testing-secret-key"


@pytest.fixture
def local_storage(settings, tmp_path):
    settings.PORTAL_STORAGE_BACKEND = "local"
    settings.PORTAL_STORAGE_ROOT = str(tmp_path / "weight-storage")
    weight_storage.cache_clear()
    yield weight_storage()
    weight_storage.cache_clear()


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    # The server logs every request at INFO; the tests' own assertions say what went wrong.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_server, settings):
    import boto3

    bucket = f"weights-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=S3_TEST_REGION,
        aws_access_key_id=S3_TEST_ACCESS_KEY_ID,
        aws_secret_access_key=S3_TEST_SECRET_ACCESS_KEY,
    ).create_bucket(Bucket=bucket)
    settings.PORTAL_STORAGE_BACKEND = "s3"
    settings.S3_ENDPOINT_URL = s3_server
    settings.S3_BUCKET = bucket
    settings.S3_REGION = S3_TEST_REGION
    settings.S3_ACCESS_KEY_ID = S3_TEST_ACCESS_KEY_ID
    settings.S3_SECRET_ACCESS_KEY = S3_TEST_SECRET_ACCESS_KEY
    weight_storage.cache_clear()
    yield weight_storage()
    weight_storage.cache_clear()


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory):
    from access.catalog.services import TINY_DEMO
    from inference.llama.checkpoint import tiny_llama_make

    return tiny_llama_make(tmp_path_factory.mktemp("demo-checkpoint") / "llama-demo-tiny", n_shards=2, **TINY_DEMO)


@pytest.fixture
def published_demo_weights(request, db, llama_catalog, demo_checkpoint):
    from access.catalog.models import ModelVariant
    from access.distribution.publishing import weights_publish

    # The storage fixture the test asked for, else local storage under its tmp_path.
    request.getfixturevalue("s3_storage" if "s3_storage" in request.fixturenames else "local_storage")
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    result = weights_publish(variant=variant, source_dir=demo_checkpoint)
    return variant, demo_checkpoint, result.weight_files
