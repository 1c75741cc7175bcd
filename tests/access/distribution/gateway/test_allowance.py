"""A link's allowance holds whatever the client sends: no mix of Range requests, interrupted
streams, HEADs or odd headers gets more bytes out of one link than its downloads x the file's
size plus the resume slack; and the gateway answers every odd input with a plain 4xx."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.distribution.gateway.streaming import FilePart, parse_range
from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.rules import allowance_bytes
from access.distribution.tokens import link_path


def _link(bundle, name="consolidated.00.pth") -> DownloadLink:
    return bundle.links.select_related("file").get(file__name=name)


def _received(response) -> int:
    """The body bytes a client gets from a gateway answer (nothing from a refusal or a HEAD)."""
    if response.status_code not in (200, 206):
        return 0
    if response.streaming:
        return sum(len(chunk) for chunk in response.streaming_content)
    return len(response.content)


_RANGE_REQUEST = st.one_of(
    st.just(("whole", None, None)),
    st.just(("head", None, None)),
    st.tuples(st.just("from"), st.integers(0, 300_000), st.none()),  # bytes=N-  (curl -C -)
    st.tuples(st.just("span"), st.integers(0, 300_000), st.integers(0, 300_000)),  # bytes=N-M  (aria2c)
    st.tuples(st.just("suffix"), st.integers(1, 300_000), st.none()),  # bytes=-N
    st.tuples(st.just("cut"), st.integers(1, 200_000), st.none()),  # a whole GET the client drops early
)


def _request(client, path: str, kind: str, first, second):
    if kind == "head":
        return client.head(path), None
    if kind == "from":
        return client.get(path, HTTP_RANGE=f"bytes={first}-"), None
    if kind == "span":
        return client.get(path, HTTP_RANGE=f"bytes={min(first, second)}-{max(first, second)}"), None
    if kind == "suffix":
        return client.get(path, HTTP_RANGE=f"bytes=-{first}"), None
    response = client.get(path)
    if kind == "cut" and response.status_code == 200:
        response.block_size = first
        received = len(next(iter(response.streaming_content)))
        response._iterator.close()  # as the server does when the client goes away
        return response, received
    return response, None


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(_RANGE_REQUEST, min_size=1, max_size=14))
def test_no_sequence_of_requests_gets_more_than_the_links_allowance(client, settings, bundle, requests):
    """Every byte a client can get out of one link, counted over any sequence of whole GETs,
    Ranges, suffixes, HEADs and dropped streams, stays within the allowance; and what the link
    records as reserved covers every byte that went out."""
    link = _link(bundle)
    DownloadLink.objects.filter(pk=link.pk).update(max_downloads=2, bytes_reserved=0, downloads_used=0)
    size = link.file.size
    allowance = allowance_bytes(max_downloads=2, file_size=size)
    path = link_path(link)
    received = 0
    for kind, first, second in requests:
        response, cut_at = _request(client, path, kind, first, second)
        received += cut_at if cut_at is not None else _received(response)
        assert response.status_code in (200, 206, 403, 416), response.status_code
    link.refresh_from_db()
    assert received <= link.bytes_reserved <= allowance
    assert link.downloads_used <= 2


def test_range_headers_with_thousands_of_digits_are_answered_not_crashed(client, bundle, body_of):
    link = _link(bundle, "params.json")
    huge = "9" * 5000
    for header, status in (
        (f"bytes={huge}-", 416),  # starts past the end
        (f"bytes=0-{huge}", 206),  # to the end
        (f"bytes=-{huge}", 206),  # the whole file as a suffix
        ("bytes=" + "0" * 4000 + "1-", 206),
    ):
        response = client.get(link_path(link), HTTP_RANGE=header)
        assert response.status_code == status, header[:30]
        assert response["Cache-Control"] == "no-store"
        body_of(response)
    assert parse_range(f"bytes=0-{huge}", 10) == (0, 9)


def test_nul_bytes_in_the_file_name_or_headers_are_refused_as_a_wrong_name(client, bundle):
    link = _link(bundle, "params.json")
    token = link_path(link).split("/")[2]
    response = client.get(f"/dl/{token}/params.json%00", HTTP_USER_AGENT="curl\x00/8")
    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode().count("\n") == 1
    ok = client.get(link_path(link), HTTP_USER_AGENT="curl\x00/8", HTTP_RANGE="bytes=0-9\x00")
    assert ok.status_code == 200  # a NUL makes the Range malformed: the whole file, as HTTP allows
    assert DownloadEvent.objects.filter(user_agent="curl/8").count() == 2


def test_requests_for_links_that_do_not_exist_cannot_grow_the_log_without_bound(client, settings, db):
    settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE = 5
    settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL = 8
    statuses = [client.get(f"/dl/junk{n}/params.json", REMOTE_ADDR="198.51.100.7").status_code for n in range(12)]
    assert statuses == [404] * 5 + [429] * 7
    told = client.get("/dl/junk/params.json", REMOTE_ADDR="198.51.100.7")
    assert told["Retry-After"].isdigit() and "Wait a minute" in told.content.decode()
    assert DownloadEvent.objects.filter(outcome="unknown").count() == 5

    # Other networks are logged until the site-wide limit; past it they are answered, unlogged.
    others = [client.get("/dl/junk/params.json", REMOTE_ADDR=f"203.0.{n}.1").status_code for n in range(6)]
    assert others == [404] * 6
    assert DownloadEvent.objects.filter(outcome="unknown").count() == 8


def test_a_file_part_learns_how_far_sendfile_got(tmp_path):
    """gunicorn sends files with socket.sendfile, which seeks the file to where it stopped: the
    gateway reads that as the bytes sent, to give the rest back to the link."""
    path = tmp_path / "shard.bin"
    path.write_bytes(bytes(range(256)) * 400)
    closed = []
    raw = open(path, "rb")  # noqa: SIM115 - FilePart owns and closes it
    raw.seek(1000)
    part = FilePart(raw, 50_000, closed.append)
    assert part.bytes_sent is None  # nothing reported yet
    sender, receiver = socket.socketpair()
    with sender, receiver:
        receiver.setblocking(False)
        sent = sender.sendfile(part, offset=1000, count=30_000)
        assert sent == 30_000
        assert part.bytes_sent == 30_000
    part.close()
    assert closed == [part]


@pytest.mark.parametrize("header", ["bytes=5-", "bytes= 5-", "bytes=005-", "bytes=5-99999999999999999999"])
def test_the_range_signed_into_a_storage_url_is_the_one_the_gateway_reserved(header):
    from access.distribution.gateway.streaming import range_header_canonical

    signed = range_header_canonical(header)
    assert parse_range(signed, 100) == parse_range(header, 100)
    assert " " not in signed and not signed.startswith("bytes=0")
