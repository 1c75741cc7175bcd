"""The gateway under gunicorn, the server the deployment runs: sendfile sends the files (whole and
from a Range), on a kept-alive connection, and the gunicorn process logs every download."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from access.distribution.models import DownloadEvent, WeightFile
from access.distribution.tokens import link_path
from tests.access.distribution.served import served_sha256
from tests.processes import free_port, http_server, subprocess_database_url

START_SECONDS = 60


@contextlib.contextmanager
def _gunicorn(*server_args: str):
    """gunicorn serving the portal on loopback against the test database and storage; yields its port."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": subprocess_database_url(),
        "SECRET_KEY": settings.SECRET_KEY,  # the links are signed with it
        "PORTAL_STORAGE_BACKEND": "local",
        "PORTAL_STORAGE_ROOT": str(settings.PORTAL_STORAGE_ROOT),
    }
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "-b", f"127.0.0.1:{port}",
               "--log-level", "warning", *server_args]
    with http_server("gunicorn", command, port=port, env=env, start_seconds=START_SECONDS) as log_tail:
        yield port
        assert "WORKER TIMEOUT" not in log_tail(), log_tail()


@pytest.fixture
def gunicorn_port(transactional_db, local_storage):
    # gthread keeps connections alive (the sync worker closes each one), which is where a cork
    # left on the socket would hold a file's last bytes back.
    with _gunicorn("-k", "gthread", "--threads", "2", "--keep-alive", "30") as port:
        yield port


def test_gunicorn_sends_every_file_whole_and_a_resume_on_one_kept_alive_connection(
    gunicorn_port, published_demo_weights, researcher, reviewer, bundle_make, sha256_of
):
    variant, _, _ = published_demo_weights
    bundle = bundle_make(user=researcher, variant=variant, reviewer=reviewer)
    links = list(bundle.links.select_related("file").order_by("file__name"))
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=30)
    conn.connect()
    first_socket = conn.sock
    for link in links:
        conn.request("GET", link_path(link))
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:200]
        assert sha256_of(body) == served_sha256(link), link.file.name
        assert not response.will_close

    shard = max(links, key=lambda link: link.file.size)
    half = shard.file.size // 2
    conn.request("GET", link_path(shard), headers={"Range": f"bytes={half}-"})
    response = conn.getresponse()
    tail = response.read()
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes {half}-{shard.file.size - 1}/{shard.file.size}"
    conn.request("GET", link_path(shard), headers={"Range": f"bytes=0-{half - 1}"})
    head = conn.getresponse().read()
    assert sha256_of(head + tail) == served_sha256(shard)
    assert conn.sock is first_socket  # every answer came on the one connection
    conn.close()

    served = DownloadEvent.objects.filter(bundle=bundle, outcome="served", counted=True)
    assert {(event.file.name, event.bytes_sent) for event in served} == {(link.file.name, link.file.size) for link in links}
    resumed = DownloadEvent.objects.filter(bundle=bundle, outcome="partial", file=shard.file)
    assert sorted(event.bytes_sent for event in resumed) == sorted([shard.file.size - half, half])


LONG_FILE_BYTES = 48 << 20
SLOW_CLIENT_BYTES_PER_SECOND = 12 << 20


def _long_file_link(published_demo_weights, researcher, reviewer, bundle_make):
    """A link to a 48 MiB file of random bytes published beside the demo weights; with its sha256."""
    variant, _, _ = published_demo_weights
    key = f"{variant.slug}/long-download.bin"
    path = Path(settings.PORTAL_STORAGE_ROOT) / key
    content = os.urandom(LONG_FILE_BYTES)
    path.write_bytes(content)
    sha256 = hashlib.sha256(content).hexdigest()
    WeightFile.objects.create(variant=variant, name=path.name, storage_key=key, size=LONG_FILE_BYTES, sha256=sha256,
                              md5=hashlib.md5(content).hexdigest())  # fmt: skip
    bundle = bundle_make(user=researcher, variant=variant, reviewer=reviewer)
    return bundle.links.select_related("file").get(file__name=path.name), sha256


def _slow_reader_connection(port: int) -> http.client.HTTPConnection:
    # A small receive buffer, as over a long-distance link: loopback would otherwise buffer
    # tens of MiB and let the server finish sending long before the client has read it all.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.sock = socket.socket()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    conn.sock.settimeout(30)
    conn.sock.connect(("127.0.0.1", port))
    return conn


def test_a_download_cut_short_under_sendfile_gives_back_what_was_not_sent_and_resumes(
    gunicorn_port, published_demo_weights, researcher, reviewer, bundle_make
):
    """gunicorn sends files with sendfile, which never reads them through Python; it still tells
    the gateway where it stopped, so a client that goes away costs only what was sent, and
    curl -C - finishes the file within one download."""
    link, sha256 = _long_file_link(published_demo_weights, researcher, reviewer, bundle_make)
    conn = _slow_reader_connection(gunicorn_port)
    conn.request("GET", link_path(link))
    response = conn.getresponse()
    head = response.read(1 << 20)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()  # the client goes away (a reset, as a dropped connection does)

    event = DownloadEvent.objects.get(link=link, counted=True)
    for _ in range(100):  # the server notices once sendfile fails
        event.refresh_from_db()
        if event.bytes_sent < LONG_FILE_BYTES:
            break
        time.sleep(0.1)
    link.refresh_from_db()
    assert len(head) <= event.bytes_sent < LONG_FILE_BYTES
    assert link.bytes_reserved == event.bytes_sent

    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=30)
    conn.request("GET", link_path(link), headers={"Range": f"bytes={len(head)}-"})
    rest = conn.getresponse().read()
    conn.close()
    assert hashlib.sha256(head + rest).hexdigest() == sha256
    link.refresh_from_db()
    assert link.downloads_used == 1
    assert link.bytes_reserved == event.bytes_sent + LONG_FILE_BYTES - len(head)


def test_a_download_that_outlasts_gunicorns_timeout_completes_under_gthread_workers(
    transactional_db, local_storage, published_demo_weights, researcher, reviewer, bundle_make
):
    """A shard takes minutes to download. gunicorn kills a worker that has not reported for --timeout
    seconds, and a sync worker cannot report while it sends a file (a sync worker fails this test);
    gthread workers, which the access.W001 check and the README offer for streaming local storage
    without nginx, send the whole file (here --timeout is 2 s and the client takes about 4 s)."""
    link, sha256 = _long_file_link(published_demo_weights, researcher, reviewer, bundle_make)

    with _gunicorn("--worker-class", "gthread", "--threads", "2", "--timeout", "2") as port:
        conn = _slow_reader_connection(port)
        conn.request("GET", link_path(link))
        response = conn.getresponse()
        assert response.status == 200
        digest, received, chunk = hashlib.sha256(), 0, 256 << 10
        while data := response.read(chunk):
            digest.update(data)
            received += len(data)
            time.sleep(len(data) / SLOW_CLIENT_BYTES_PER_SECOND)
        conn.close()
    assert received == LONG_FILE_BYTES
    assert digest.hexdigest() == sha256


def _long_checkpoint_link(published_demo_weights, researcher, reviewer, bundle_make):
    """A link to a researcher's marked copy of a 48 MiB float16 checkpoint published beside the demo."""
    import torch

    from inference.llama.torch_zip import checkpoint_layout, layout_to_json

    variant, _, _ = published_demo_weights
    key = f"{variant.slug}/consolidated.99.pth"
    path = Path(settings.PORTAL_STORAGE_ROOT) / key
    generator = torch.Generator().manual_seed(11)
    torch.save({f"layers.{i}.attention.wq.weight": (torch.randn(1024, 2048, generator=generator) * 0.02).half()
                for i in range(LONG_FILE_BYTES // (4 << 20))}, path)  # fmt: skip
    content = path.read_bytes()
    WeightFile.objects.create(variant=variant, name=path.name, storage_key=key, size=len(content),
                              sha256=hashlib.sha256(content).hexdigest(), md5=hashlib.md5(content).hexdigest(),
                              layout=layout_to_json(checkpoint_layout(path)))  # fmt: skip
    bundle = bundle_make(user=researcher, variant=variant, reviewer=reviewer)
    link = bundle.links.select_related("file", "copy").get(file__name=path.name)
    assert link.copy_id is not None
    return link, content


def test_a_marked_copy_goes_out_by_sendfile_and_made_pages_and_a_cut_short_one_resumes(
    gunicorn_port, published_demo_weights, researcher, reviewer, bundle_make
):
    """A recipient's copy under gunicorn: the original's runs by sendfile, the marked pages and
    CRCs written between them. Whole, it is the copy (not the original); cut short, it costs what
    was sent, and the resume completes the same copy."""
    from tests.access.distribution.served import served_bytes

    link, original = _long_checkpoint_link(published_demo_weights, researcher, reviewer, bundle_make)
    expected = served_bytes(link)
    assert expected != original and len(expected) == len(original)

    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=30)
    conn.request("GET", link_path(link))
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(len(original))
    assert response.read() == expected
    for first, last in [(0, 99), (1_000_003, 5_000_000), (len(original) - 5000, len(original) - 1)]:
        conn.request("GET", link_path(link), headers={"Range": f"bytes={first}-{last}"})
        part = conn.getresponse()
        assert part.status == 206 and part.read() == expected[first : last + 1]
    conn.close()

    conn = _slow_reader_connection(gunicorn_port)
    conn.request("GET", link_path(link))
    head = conn.getresponse().read(1 << 20)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    event = DownloadEvent.objects.filter(link=link, counted=True).latest("id")
    for _ in range(100):
        event.refresh_from_db()
        if event.bytes_sent < len(original):
            break
        time.sleep(0.1)
    assert len(head) <= event.bytes_sent < len(original)

    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=30)
    conn.request("GET", link_path(link), headers={"Range": f"bytes={len(head)}-"})
    rest = conn.getresponse().read()
    conn.close()
    assert head + rest == expected
