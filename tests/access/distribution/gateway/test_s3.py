"""The download gateway with S3 storage (moto's S3 server on loopback): links to files sent as
published answer with a redirect to a short-lived presigned GET, and the bucket serves the bytes;
a recipient's marked copy is sent by the portal, made from ranged reads of the bucket."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.utils import timezone

from access.distribution.models import DownloadEvent
from access.distribution.tokens import link_path
from tests.access.distribution.served import served_sha256


@pytest.fixture
def bundle(s3_storage, published_demo_weights, researcher, reviewer, bundle_make):
    """Links to the demo weights with fingerprints off: every file goes out by redirect."""
    variant = published_demo_weights[0]
    variant.fingerprint = False
    variant.save(update_fields=["fingerprint"])
    return bundle_make(user=researcher, variant=variant, reviewer=reviewer)


@pytest.fixture
def marked_bundle(s3_storage, published_demo_weights, researcher, reviewer, bundle_make):
    """Links to the demo weights with fingerprints on (the default)."""
    return bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)


def test_a_marked_copy_is_sent_by_the_portal_from_ranged_reads_and_any_range_matches_it(
    client, marked_bundle, body_of, sha256_of, published_demo_weights
):
    source_dir = published_demo_weights[1]
    shard = marked_bundle.links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    response = client.get(link_path(shard))
    assert response.status_code == 200 and "Location" not in response
    whole = body_of(response)
    assert sha256_of(whole) == shard.copy.sha256 == served_sha256(shard)
    assert whole != (source_dir / "consolidated.00.pth").read_bytes() and len(whole) == shard.file.size
    for first, last in [(0, 0), (5, 70_000), (100_000, shard.file.size - 1), (shard.file.size - 9, shard.file.size)]:
        part = client.get(link_path(shard), HTTP_RANGE=f"bytes={first}-{last}")
        assert part.status_code == 206 and body_of(part) == whole[first : last + 1]
    # Files without weights still go out by redirect.
    assert client.get(link_path(marked_bundle.links.get(file__name="params.json"))).status_code == 302
    event = DownloadEvent.objects.filter(link=shard).order_by("id").first()
    assert (event.outcome, event.status_code, event.bytes_sent) == ("served", 200, shard.file.size)


def _fetch(url: str, headers: dict | None = None):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return response.status, response.headers, response.read()  # headers: case-insensitive


def test_every_demo_file_downloads_from_the_bucket_with_its_sha256(client, settings, bundle, s3_server, sha256_of):
    for link in bundle.links.select_related("file"):
        response = client.get(link_path(link))
        assert response.status_code == 302
        assert response["Cache-Control"] == "no-store"
        location = response["Location"]
        assert location.startswith(f"{s3_server}/{settings.S3_BUCKET}/")
        query = parse_qs(urlsplit(location).query)
        assert int(query["X-Amz-Expires"][0]) == settings.DOWNLOAD_PRESIGNED_URL_SECONDS <= 900

        status, headers, body = _fetch(location)
        assert status == 200
        assert sha256_of(body) == link.file.sha256
        assert headers["Content-Disposition"] == f'attachment; filename="{link.file.name}"'
        link.refresh_from_db()
        assert link.downloads_used == 1
    assert set(DownloadEvent.objects.values_list("status_code", "outcome", "counted")) == {(302, "redirected", True)}


def test_resume_through_the_redirect_completes_the_file_for_the_bytes_it_asks(client, bundle, sha256_of):
    link = bundle.links.select_related("file").get(file__name="consolidated.01.pth")
    size = link.file.size
    first = client.get(link_path(link))
    _, _, whole = _fetch(first["Location"])
    partial = whole[:12_345]  # the connection dropped here

    resumed = client.get(link_path(link), HTTP_RANGE="bytes=12345-")
    assert resumed.status_code == 302
    # The Range is signed into the URL: S3 serves it to a client that sends it, and nothing else.
    assert parse_qs(urlsplit(resumed["Location"]).query)["X-Amz-SignedHeaders"] == ["host;range"]
    status, headers, rest = _fetch(resumed["Location"], {"Range": "bytes=12345-"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes 12345-{size - 1}/{size}"
    assert sha256_of(partial + rest) == link.file.sha256
    link.refresh_from_db()
    # S3 does not say how much of the first redirect it sent, so that one cost a whole copy.
    assert link.bytes_reserved == size + (size - 12_345)
    assert link.downloads_used == 2


def test_ranges_through_the_redirect_never_pass_the_allowance(client, settings, bundle):
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 1
    link = bundle.links.select_related("file").get(file__name="consolidated.01.pth")
    link.max_downloads = 1
    link.save(update_fields=["max_downloads"])
    size = link.file.size
    half = size // 2
    assert client.get(link_path(link), HTTP_RANGE=f"bytes=0-{half - 1}").status_code == 302
    assert client.get(link_path(link), HTTP_RANGE=f"bytes= {half}-").status_code == 302
    for byte_range in ("bytes=1-", f"bytes=-{size // 2 + 1}", f"bytes=0-{size // 2}", ""):
        extra = {"HTTP_RANGE": byte_range} if byte_range else {}
        refused = client.get(link_path(link), **extra)
        assert refused.status_code == 403 and "Location" not in refused
    link.refresh_from_db()
    assert link.bytes_reserved == size


def test_the_bucket_itself_stays_private(bundle, s3_server, settings):
    link = bundle.links.select_related("file").get(file__name="params.json")
    with pytest.raises(urllib.error.HTTPError) as refused:
        _fetch(f"{s3_server}/{settings.S3_BUCKET}/{link.file.storage_key}")
    assert refused.value.code == 403
    refused.value.close()


def test_a_presigned_url_is_reused_for_a_minute_then_signed_afresh(client, settings, bundle):
    settings.DOWNLOAD_PRESIGNED_URL_SECONDS = 900
    link = bundle.links.select_related("file").get(file__name="params.json")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        first = client.get(link_path(link))["Location"]
        traveller.shift(59)
        assert client.get(link_path(link))["Location"] == first  # still valid for 900 - 59 s
        traveller.shift(2)
        fresh = client.get(link_path(link))["Location"]
    assert fresh != first
    assert int(parse_qs(urlsplit(fresh).query)["X-Amz-Expires"][0]) == settings.DOWNLOAD_PRESIGNED_URL_SECONDS
    link.refresh_from_db()
    assert link.downloads_used == 3  # reuse saves signing, never the count


def test_a_head_is_answered_by_the_gateway_not_with_a_url_to_the_file(client, bundle):
    """A HEAD costs nothing, so it must not hand out a presigned GET: that would be a free copy."""
    link = bundle.links.select_related("file").get(file__name="consolidated.01.pth")
    for extra in ({}, {"HTTP_RANGE": "bytes=100-"}):
        response = client.head(link_path(link), **extra)
        assert response.status_code in (200, 206)
        assert "Location" not in response
        assert response["Accept-Ranges"] == "bytes" and response["ETag"] == f'"{link.file.sha256}"'
    assert response["Content-Length"] == str(link.file.size - 100)
    link.refresh_from_db()
    assert link.bytes_reserved == 0
