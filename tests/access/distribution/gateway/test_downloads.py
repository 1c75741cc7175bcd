"""The download gateway against local storage: what a researcher's client gets from /dl/ links."""

from __future__ import annotations

import datetime as dt
import socket
import string

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.audit.models import AuditEvent
from access.catalog.services import license_publish
from access.distribution import bundles, leak, rules
from access.distribution.bundles import bundle_create, bundle_suspend
from access.distribution.gateway import counting, links
from access.distribution.gateway.streaming import MARKED_WINDOW_BYTES
from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.tokens import bundle_manifest_path, bundle_script_path, link_path
from access.grants.models import LicenseAcceptance
from access.grants.services import grant_accept_license, grant_revoke, grant_suspend
from tests.access.distribution.served import served_bytes, served_etag, served_sha256


def _link(bundle, name="consolidated.00.pth") -> DownloadLink:
    return bundle.links.select_related("file").get(file__name=name)


def _close_as_the_server_does(response) -> None:
    """Close a streaming response part-way, as a WSGI server does when the client goes away.
    Through the test client's own closing wrapper (the iterator under ``streaming_content``),
    which keeps the test's database connection open as it closes the response."""
    response._iterator.close()


def _used(link) -> int:
    link.refresh_from_db()
    return link.downloads_used


def test_every_demo_file_downloads_whole_with_its_sha256(client, bundle, published_demo_weights, body_of, sha256_of):
    _, source_dir, weight_files = published_demo_weights
    names = {weight_file.name for weight_file in weight_files}
    assert {"params.json", "tokenizer.model", "consolidated.00.pth", "consolidated.01.pth", "checklist.chk"} <= names
    for link in bundle.links.select_related("file"):
        response = client.get(link_path(link))
        body = body_of(response)
        assert response.status_code == 200
        assert sha256_of(body) == served_sha256(link)
        if link.copy_id is None and link.file.name != "checklist.chk":  # the portal makes those
            assert body == (source_dir / link.file.name).read_bytes()
        else:  # the recipient's own: marked shards, and a checklist of their md5s
            assert body == served_bytes(link) != (source_dir / link.file.name).read_bytes()
        assert response["Content-Length"] == str(link.file.size)
        assert response["ETag"] == served_etag(link)
        assert response["Accept-Ranges"] == "bytes"
        assert response["Content-Disposition"].startswith(f'attachment; filename="{link.file.name}"')
        assert response["Cache-Control"] == "no-store"
        assert _used(link) == 1
    served = DownloadEvent.objects.filter(bundle=bundle, outcome="served", status_code=200, counted=True)
    assert {(event.file.name, event.bytes_sent) for event in served} == {
        (link.file.name, link.file.size) for link in bundle.links.select_related("file")
    }


def test_range_resume_completes_the_file_and_counts_once(client, bundle, body_of, sha256_of):
    link = _link(bundle)
    size = link.file.size
    first = client.get(link_path(link), HTTP_RANGE="bytes=0-9999")
    head = body_of(first)
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-9999/{size}"
    assert len(head) == 10_000

    rest = client.get(link_path(link), HTTP_RANGE="bytes=10000-", HTTP_IF_RANGE=served_etag(link))
    tail = body_of(rest)
    assert rest.status_code == 206
    assert rest["Content-Range"] == f"bytes 10000-{size - 1}/{size}"
    assert rest["Content-Length"] == str(size - 10_000)
    assert sha256_of(head + tail) == served_sha256(link)
    assert _used(link) == 1  # the two parts make one copy
    assert link.bytes_reserved == size
    assert list(DownloadEvent.objects.filter(link=link).order_by("id").values_list("counted", "bytes_sent")) == [
        (True, 10_000),
        (True, size - 10_000),
    ]


def test_suffix_range_sends_the_last_bytes(client, bundle, body_of):
    link = _link(bundle, "params.json")
    whole = body_of(client.get(link_path(link)))
    response = client.get(link_path(link), HTTP_RANGE="bytes=-10")
    assert response.status_code == 206
    assert body_of(response) == whole[-10:]


def test_if_range_for_another_version_sends_the_whole_file_and_counts(client, bundle, body_of, sha256_of):
    link = _link(bundle)
    body_of(client.get(link_path(link)))
    response = client.get(link_path(link), HTTP_RANGE="bytes=100-", HTTP_IF_RANGE='"an-older-version"')
    body = body_of(response)
    assert response.status_code == 200
    assert sha256_of(body) == served_sha256(link)
    assert _used(link) == 2


def test_unsatisfiable_range_answers_416_with_the_size_and_counts_nothing(client, bundle):
    link = _link(bundle, "params.json")
    response = client.get(link_path(link), HTTP_RANGE=f"bytes={link.file.size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{link.file.size}"
    assert _used(link) == 0


def test_resume_on_a_fresh_link_costs_only_the_bytes_it_asks_for(client, bundle, body_of):
    # Links expired mid-file; the researcher made new ones and continues the partial file.
    link = _link(bundle)
    response = client.get(link_path(link), HTTP_RANGE="bytes=5000-")
    assert response.status_code == 206
    assert len(body_of(response)) == link.file.size - 5000
    assert _used(link) == 1
    assert link.bytes_reserved == link.file.size - 5000


def test_link_refuses_a_new_start_once_its_downloads_are_used_up(
    client, settings, published_demo_weights, researcher, reviewer, bundle_make, body_of
):
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 2
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    link = _link(bundle)
    assert [client.get(link_path(link)).status_code for _ in range(2)] == [200, 200]

    refused = client.get(link_path(link))
    assert refused.status_code == 403
    assert not refused.streaming
    assert "all of its 2 downloads" in refused.content.decode()
    assert "http://testserver/grants/" in refused.content.decode()
    assert refused["Cache-Control"] == "no-store"
    assert _used(link) == 2

    # Two copies were sent: past the resume slack (half the file here), a Range is refused too,
    # whichever bytes it asks for.
    size = link.file.size
    for byte_range in ("bytes=1-", "bytes=1000-", f"bytes=-{size // 2 + 1}", f"bytes=0-{size // 2}"):
        _assert_no_bytes(client.get(link_path(link), HTTP_RANGE=byte_range), 403, "all of its 2 downloads")
    link.refresh_from_db()
    assert link.bytes_reserved == 2 * size


def test_an_interrupted_download_resumes_within_the_allowance(
    client, settings, published_demo_weights, researcher, reviewer, bundle_make, body_of, sha256_of, monkeypatch
):
    monkeypatch.setitem(MARKED_WINDOW_BYTES, "local", 10_000)  # a marked copy goes out a window at a time
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 1
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    link = _link(bundle)
    size = link.file.size
    response = client.get(link_path(link))
    response.block_size = 10_000
    partial = next(iter(response.streaming_content))
    _close_as_the_server_does(response)  # the connection dropped after the first block
    link.refresh_from_db()
    assert link.bytes_reserved == len(partial) < size  # what was not sent went back to the link

    rest = client.get(link_path(link), HTTP_RANGE=f"bytes={len(partial)}-")
    assert rest.status_code == 206
    assert sha256_of(partial + body_of(rest)) == served_sha256(link)
    assert (_used(link), link.bytes_reserved) == (1, size)
    _assert_no_bytes(client.get(link_path(link)), 403, "all of its 1 downloads")
    event = DownloadEvent.objects.filter(link=link, counted=True).order_by("id").first()
    assert (event.outcome, event.bytes_sent) == ("served", len(partial))


def test_a_file_fetched_as_parallel_parts_costs_one_download(client, bundle, body_of, sha256_of):
    # aria2c -x 8 and hf_transfer fetch one file as several Range requests at once.
    link = _link(bundle)
    size = link.file.size
    bounds = [size * part // 8 for part in range(9)]
    parts = [
        body_of(client.get(link_path(link), HTTP_RANGE=f"bytes={first}-{last - 1}"))
        for first, last in zip(bounds, bounds[1:], strict=False)
    ]
    assert sha256_of(b"".join(parts)) == served_sha256(link)
    assert (_used(link), link.bytes_reserved) == (1, size)


def test_a_range_past_what_is_left_is_refused_and_says_what_is_left(
    client, settings, published_demo_weights, researcher, reviewer, bundle_make, body_of
):
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 1
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    link = _link(bundle)
    size = link.file.size
    sent = size * 3 // 4
    assert len(body_of(client.get(link_path(link), HTTP_RANGE=f"bytes=0-{sent - 1}"))) == sent

    refused = client.get(link_path(link))
    left = size + size // 2 - sent  # one download plus the resume slack (half the file at most)
    _assert_no_bytes(refused, 403, f"{left} bytes left", f"fewer than the {size} asked for")
    assert len(body_of(client.get(link_path(link), HTTP_RANGE=f"bytes={sent}-"))) == size - sent
    assert DownloadEvent.objects.filter(link=link, outcome="exhausted", status_code=403).count() == 1


def test_head_reports_the_file_without_counting(client, bundle):
    link = _link(bundle)
    response = client.head(link_path(link))
    assert response.status_code == 200
    assert response["Content-Length"] == str(link.file.size)
    assert response.content == b""
    assert _used(link) == 0


def _assert_no_bytes(response, status: int, *phrases: str):
    assert response.status_code == status
    assert not response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    assert "Traceback" not in text
    for phrase in phrases:
        assert phrase in text, text


def test_expired_links_answer_410_and_say_where_to_get_new_ones(client, bundle):
    link = _link(bundle)
    with time_machine.travel(bundle.expires_at + dt.timedelta(seconds=1)):
        _assert_no_bytes(client.get(link_path(link)), 410, "expired", "http://testserver/grants/")
        _assert_no_bytes(client.get(bundle_script_path(bundle)), 410, "expired")
        _assert_no_bytes(client.get(bundle_manifest_path(bundle)), 410, "expired")
    assert _used(link) == 0


def test_links_end_with_the_grant_even_before_their_own_expiry(
    client, published_demo_weights, researcher, reviewer, bundle_make
):
    grant_end = timezone.now() + dt.timedelta(hours=2)
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer, expires_at=grant_end)
    assert bundle.expires_at == grant_end
    with time_machine.travel(grant_end + dt.timedelta(minutes=1)):
        _assert_no_bytes(client.get(link_path(_link(bundle))), 410)


def test_links_of_a_replaced_bundle_answer_410(client, bundle, researcher):
    old_link = _link(bundle)
    new_bundle = bundle_create(grant=bundle.grant, user=researcher)
    _assert_no_bytes(client.get(link_path(old_link)), 410, "replaced", "http://testserver/grants/")
    assert client.get(link_path(_link(new_bundle))).status_code == 200


def _revoke(bundle, reviewer):
    grant_revoke(grant=bundle.grant, actor=reviewer, reason="Shared the weights publicly.")


def _suspend_grant(bundle, reviewer):
    grant_suspend(grant=bundle.grant, actor=reviewer, reason="Under investigation.")


def _suspend_bundle(bundle, reviewer):
    bundle_suspend(bundle=bundle, reason="Links posted on a forum.", actor=reviewer)


def _new_license(bundle, reviewer):
    license_publish(
        family=bundle.grant.variant.family, version="2.0", title="License 2.0", text="New terms.", actor=reviewer
    )


@pytest.mark.parametrize(
    ("block", "phrase"),
    [
        (_revoke, "revoked"),
        (_suspend_grant, "suspended"),
        (_suspend_bundle, "suspended"),
        (_new_license, "Accept the current license"),
    ],
    ids=["revoked", "grant-suspended", "bundle-suspended", "license-outdated"],
)
def test_blocked_access_stops_unexpired_links_at_once(client, bundle, reviewer, block, phrase, body_of):
    link = _link(bundle)
    started = client.get(link_path(link), HTTP_RANGE="bytes=0-99")
    assert started.status_code == 206
    body_of(started)

    block(bundle, reviewer)
    for extra in ({}, {"HTTP_RANGE": "bytes=100-"}):  # neither a new start nor a resume
        _assert_no_bytes(client.get(link_path(link), **extra), 403, phrase)
    _assert_no_bytes(client.get(bundle_script_path(bundle)), 403, phrase)
    assert _used(link) == 1


_TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_."


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_tampered_tokens_never_yield_a_byte(client, bundle, data):
    link = _link(bundle, "params.json")
    path = link_path(link)
    token = path.split("/")[2]
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap-signature"]))
    position = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(_TOKEN_ALPHABET))
    if kind == "replace":
        mutated = token[:position] + char + token[position + 1 :]
    elif kind == "insert":
        mutated = token[:position] + char + token[position:]
    elif kind == "delete":
        mutated = token[:position] + token[position + 1 :]
    elif kind == "truncate":
        mutated = token[:position]
    else:  # a real signature on another id
        other = _link(bundle, "tokenizer.model")
        mutated = token.split(".")[0] + "." + link_path(other).split("/")[2].split(".")[1]
    if not mutated or mutated == token:
        return
    response = client.get(f"/dl/{mutated}/params.json")
    assert response.status_code in (404, 410, 429)  # 429: past the unknown-link limit of a network
    assert not response.streaming
    assert b'"dim"' not in response.content
    assert _used(link) == 0


def test_unknown_link_answers_404_and_is_logged(client, db):
    response = client.get("/dl/not-a-token/params.json", REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="curl/8.5.0")
    _assert_no_bytes(response, 404, "not valid")
    event = DownloadEvent.objects.get()
    assert (event.link, event.status_code, event.outcome, event.ip_address, event.network, event.user_agent) == (
        None, 404, "unknown", "198.51.100.7", "198.51.100.0/24", "curl/8.5.0"
    )  # fmt: skip


def test_link_with_another_file_name_is_refused(client, bundle):
    link = _link(bundle, "params.json")
    token = link_path(link).split("/")[2]
    _assert_no_bytes(client.get(f"/dl/{token}/tokenizer.model"), 404)
    assert _used(link) == 0


def test_every_gateway_request_is_logged_with_who_what_and_outcome(client, bundle, body_of):
    link = _link(bundle)
    requests = [
        ("get", link_path(link), {}),
        ("get", link_path(link), {"HTTP_RANGE": "bytes=100-"}),
        ("head", link_path(link), {}),
        ("post", link_path(link), {}),
        ("get", "/dl/forged.token/consolidated.00.pth", {}),
        ("get", bundle_script_path(bundle), {}),
        ("get", bundle_manifest_path(bundle), {}),
    ]
    statuses = []
    for method, path, extra in requests:
        response = getattr(client, method)(
            path, REMOTE_ADDR="2001:db8:1234:5678::9", HTTP_USER_AGENT="Wget/1.21", **extra
        )
        body_of(response)
        statuses.append(response.status_code)
    assert statuses == [200, 206, 200, 405, 404, 200, 200]

    events = list(DownloadEvent.objects.order_by("id"))
    assert [(e.status_code, e.outcome, e.counted, e.range_header) for e in events] == [
        (200, "served", True, ""),
        (206, "partial", True, "bytes=100-"),
        (200, "head", False, ""),
        (405, "method_not_allowed", False, ""),
        (404, "unknown", False, ""),
        (200, "script", False, ""),
        (200, "manifest", False, ""),
    ]
    assert {e.network for e in events} == {"2001:db8:1234::/48"}
    assert {e.user_agent for e in events} == {"Wget/1.21"}
    assert [e.grant_id for e in events] == [bundle.grant_id] * 4 + [None] + [bundle.grant_id] * 2
    assert events[1].bytes_sent == link.file.size - 100


def test_leak_rule_suspends_a_bundle_used_from_too_many_networks(
    client, settings, bundle, django_capture_on_commit_callbacks
):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3
    link = _link(bundle, "params.json")
    # Two addresses in one /24 are one network.
    for address in ("203.0.113.5", "203.0.113.77", "198.51.100.1", "192.0.2.10"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        refused = client.get(link_path(link), REMOTE_ADDR="100.64.0.1")
    _assert_no_bytes(refused, 403, "suspended", "do not share")
    assert len(callbacks) == 1  # the reviewers' alert, sent once the suspension commits

    bundle.refresh_from_db()
    assert bundle.suspended_at is not None
    assert "4 networks" in bundle.suspended_reason
    assert AuditEvent.objects.filter(action="download.bundle_suspended", target_id=str(bundle.pk)).exists()
    # Suspended for everyone, the first network included.
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="203.0.113.5"), 403, "suspended")


def test_leak_window_forgets_old_networks(client, settings, bundle):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 1
    settings.DOWNLOAD_LEAK_WINDOW_HOURS = 1
    link = _link(bundle, "params.json")
    with time_machine.travel(timezone.now() - dt.timedelta(hours=2)):
        assert client.get(link_path(link), REMOTE_ADDR="203.0.113.5").status_code == 200
    assert client.get(link_path(link), REMOTE_ADDR="198.51.100.1").status_code == 200
    bundle.refresh_from_db()
    assert bundle.suspended_at is None


def test_manifest_lists_every_file_with_its_link_and_checksums(client, bundle, body_of, sha256_of):
    response = client.get(bundle_manifest_path(bundle))
    assert response.status_code == 200
    manifest = response.json()
    assert manifest["model"] == "llama-demo-tiny"
    assert manifest["bundle"] == bundle.public_id
    assert manifest["expires_at"] == bundle.expires_at.isoformat()
    for entry in manifest["files"]:
        assert set(entry) == {"name", "url", "size", "sha256", "md5"}
        assert entry["url"].startswith("http://testserver/dl/")
        fetched = body_of(client.get(entry["url"].removeprefix("http://testserver")))
        assert (len(fetched), sha256_of(fetched)) == (entry["size"], entry["sha256"])


def test_nginx_sends_the_file_when_accel_redirect_is_configured(client, settings, bundle, body_of):
    settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX = "/protected-weights/"
    link = _link(bundle, "tokenizer.model")  # no weights: sent as published
    response = client.get(link_path(link))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-weights/{link.file.storage_key}"
    assert response.content == b""
    assert response["Content-Disposition"].startswith('attachment; filename="tokenizer.model"')
    assert _used(link) == 1

    # A recipient's marked copy exists nowhere for nginx to send: the portal sends it.
    shard = _link(bundle)
    marked = client.get(link_path(shard))
    assert marked.status_code == 200 and "X-Accel-Redirect" not in marked
    assert body_of(marked) == served_bytes(shard)


def test_missing_file_in_storage_answers_503_and_gives_the_download_back(client, bundle, local_storage):
    link = _link(bundle)
    local_storage.path(link.file.storage_key).unlink()
    _assert_no_bytes(client.get(link_path(link)), 503, "try again")
    assert _used(link) == 0


def test_missing_file_on_a_known_network_gives_the_download_back_too(client, bundle, local_storage):
    # The network has used the bundle, so on PostgreSQL the one-statement path takes the download
    # before the file is opened; it must give it back.
    assert client.get(link_path(_link(bundle, "params.json"))).status_code == 200
    link = _link(bundle)
    local_storage.path(link.file.storage_key).unlink()
    _assert_no_bytes(client.get(link_path(link)), 503, "try again")
    assert _used(link) == 0
    event = DownloadEvent.objects.filter(link=link).latest("id")
    assert (event.outcome, event.status_code, event.counted) == ("storage_error", 503, False)


def test_the_rules_overrule_a_download_the_fast_statement_took(client, bundle, monkeypatch):
    # Should the one-statement path's predicate ever pass a request the rules refuse, the rules
    # win: no byte, the download given back, the refusal logged.
    link = _link(bundle, "params.json")
    assert client.get(link_path(link)).status_code == 200
    refused = rules.DownloadOutcome("revoked", 403, "Your access to this model was revoked; these links no longer work.")
    monkeypatch.setattr(links, "gateway_authorize", lambda link: refused)
    _assert_no_bytes(client.get(link_path(link)), 403, "revoked")
    assert _used(link) == 1
    event = DownloadEvent.objects.filter(link=link).latest("id")
    assert (event.outcome, event.status_code, event.counted) == ("revoked", 403, False)


# --- The gateway's one-query decision: license currency and the leak rule ----------------


def test_a_newer_license_effective_in_the_future_does_not_block_links(client, bundle, reviewer):
    family = bundle.grant.variant.family
    effective_at = timezone.now() + dt.timedelta(hours=1)  # within the links' lifetime
    license_publish(family=family, version="2.0", title="License 2.0", text="New terms.", effective_at=effective_at,
                    actor=reviewer)  # fmt: skip
    link = _link(bundle, "params.json")
    assert client.get(link_path(link)).status_code == 200
    with time_machine.travel(effective_at + dt.timedelta(seconds=1)):
        _assert_no_bytes(client.get(link_path(link)), 403, "Accept the current license")


def test_a_newer_license_already_effective_blocks_links_until_accepted(client, bundle, reviewer, researcher):
    family = bundle.grant.variant.family
    newer = license_publish(family=family, version="2.0", title="License 2.0", text="New terms.",
                            effective_at=timezone.now() - dt.timedelta(minutes=1), actor=reviewer)  # fmt: skip
    link = _link(bundle, "params.json")
    _assert_no_bytes(client.get(link_path(link)), 403, "Accept the current license", "http://testserver/grants/")
    grant_accept_license(grant=bundle.grant, user=researcher, license_version=newer)
    assert client.get(link_path(link)).status_code == 200
    assert _used(link) == 1


def test_licenses_effective_at_the_same_moment_go_to_the_newest(client, bundle, reviewer, researcher):
    family = bundle.grant.variant.family
    at = timezone.now() - dt.timedelta(minutes=1)
    older = license_publish(family=family, version="2.0", title="2.0", text="Terms A.", effective_at=at, actor=reviewer)
    license_publish(family=family, version="2.1", title="2.1", text="Terms B.", effective_at=at, actor=reviewer)
    LicenseAcceptance.objects.create(user=researcher, license=older, license_sha256=older.sha256)
    link = _link(bundle, "params.json")
    # As license_current: the tie goes to the later version, which the holder has not accepted.
    _assert_no_bytes(client.get(link_path(link)), 403, "Accept the current license")


def test_another_users_acceptance_does_not_unblock_links(client, bundle, reviewer, published_demo_weights):
    family = bundle.grant.variant.family
    newer = license_publish(family=family, version="2.0", title="License 2.0", text="New terms.", actor=reviewer)
    LicenseAcceptance.objects.create(user=reviewer, license=newer, license_sha256=newer.sha256)
    _assert_no_bytes(client.get(link_path(_link(bundle, "params.json"))), 403, "Accept the current license")


def _count_leak_rule_runs(monkeypatch) -> list:
    runs = []
    real = leak.bundle_leak_check

    def counting(bundle, *, network=""):
        runs.append(network)
        return real(bundle, network=network)

    monkeypatch.setattr(leak, "bundle_leak_check", counting)
    return runs


def test_only_a_network_new_to_the_bundle_runs_the_leak_rule(client, settings, bundle, monkeypatch):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    runs = _count_leak_rule_runs(monkeypatch)
    link = _link(bundle, "params.json")
    for address in ("203.0.113.5", "198.51.100.1", "203.0.113.9", "198.51.100.200", "203.0.113.5"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    assert runs == ["203.0.113.0/24", "198.51.100.0/24"]
    bundle.refresh_from_db()
    assert bundle.suspended_at is None


def test_a_new_network_past_the_limit_suspends_at_once(client, settings, bundle, monkeypatch):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    runs = _count_leak_rule_runs(monkeypatch)
    link = _link(bundle, "params.json")
    for address in ("203.0.113.5", "198.51.100.1"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="192.0.2.10"), 403, "suspended")
    assert runs == ["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"]  # each network's first request
    bundle.refresh_from_db()
    assert "3 networks" in bundle.suspended_reason
    assert _used(link) == 2
    assert DownloadEvent.objects.filter(link=link).latest("id").outcome == "bundle_suspended"


def test_a_request_refused_before_the_leak_rule_does_not_make_its_network_known(client, settings, bundle):
    # A POST (405) or a wrong file name (404) is logged with its network before the rule runs;
    # the same network's next GET must still be counted as new.
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    link = _link(bundle, "params.json")
    for address in ("203.0.113.5", "198.51.100.1"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    assert client.post(link_path(link), REMOTE_ADDR="192.0.2.10").status_code == 405
    assert client.get(link_path(link).replace("params.json", "other.bin"), REMOTE_ADDR="100.64.0.1").status_code == 404
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="192.0.2.10"), 403, "suspended")
    bundle.refresh_from_db()
    assert bundle.suspended_at is not None and "192.0.2.0/24" in bundle.suspended_reason


def test_networks_refused_while_suspended_are_not_cleared_by_the_lift(client, settings, bundle, reviewer):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    link = _link(bundle, "params.json")
    DownloadLink.objects.filter(pk=link.pk).update(max_downloads=20)
    for address in ("203.0.113.5", "198.51.100.1"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="192.0.2.10"), 403, "suspended")
    # Tried while suspended, named in no suspension reason: not what the reviewer cleared.
    for address in ("100.64.0.1", "100.64.1.1", "100.64.2.1"):
        _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR=address), 403, "suspended")

    bundles.bundle_unsuspend(bundle=bundle, actor=reviewer, reason="One lab, three sites; confirmed by phone.")

    bundle.refresh_from_db()
    assert bundle.leak_cleared_networks == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    # Their attempts still count: three networks past a limit of two, so the first one back is refused.
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="100.64.0.1"), 403, "suspended")
    bundle.refresh_from_db()
    assert bundle.leak_flagged_networks == ["100.64.0.0/24", "100.64.1.0/24", "100.64.2.0/24"]


def test_an_unexpected_error_while_serving_gives_the_download_back(client, bundle, monkeypatch):
    assert client.get(link_path(_link(bundle, "params.json"))).status_code == 200  # the network is known
    link = _link(bundle, "tokenizer.model")

    def broken(*args, **kwargs):
        raise RuntimeError("the file response could not be built")

    monkeypatch.setattr("access.distribution.gateway.views.FileResponse", broken)
    with pytest.raises(RuntimeError):
        client.get(link_path(link))
    assert _used(link) == 0
    assert not DownloadEvent.objects.filter(link=link, counted=True).exists()


def test_a_lowered_limit_suspends_at_the_next_new_network(client, settings, bundle):
    # The limit was lowered after three networks used the bundle: they go on, a fourth is refused.
    link = _link(bundle, "params.json")
    for address in ("203.0.113.5", "198.51.100.1", "192.0.2.10"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    assert client.get(link_path(link), REMOTE_ADDR="203.0.113.5").status_code == 200
    bundle.refresh_from_db()
    assert bundle.suspended_at is None
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="100.64.0.1"), 403, "suspended")
    bundle.refresh_from_db()
    assert "4 networks" in bundle.suspended_reason


def test_networks_cleared_by_a_reviewer_are_not_counted_again(client, settings, bundle, reviewer):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    link = _link(bundle, "params.json")
    DownloadLink.objects.filter(pk=link.pk).update(max_downloads=20)  # this test is about networks, not counts
    for address in ("203.0.113.5", "198.51.100.1"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="192.0.2.10"), 403, "suspended")

    bundles.bundle_unsuspend(bundle=bundle, actor=reviewer, reason="One lab, three sites; confirmed by phone.")

    # The three networks the reviewer looked into go on, and two more are within the limit ...
    for address in ("192.0.2.10", "203.0.113.5", "198.51.100.1", "100.64.0.1", "100.64.1.1"):
        assert client.get(link_path(link), REMOTE_ADDR=address).status_code == 200, address
    bundle.refresh_from_db()
    assert bundle.suspended_at is None
    assert bundle.leak_flagged_networks == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    assert bundle.leak_cleared_networks == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    # ... a third new one is a leak again.
    _assert_no_bytes(client.get(link_path(link), REMOTE_ADDR="100.64.2.1"), 403, "suspended")
    bundle.refresh_from_db()
    assert "100.64.2.0/24" in bundle.suspended_reason and "203.0.113.0/24" not in bundle.suspended_reason


def test_gateway_link_load_tells_whether_the_network_used_the_grant_within_the_window(settings, bundle):
    link = _link(bundle, "params.json")
    now = timezone.now()
    grant = bundle.grant
    for index, network in enumerate(["10.0.1.0/24", "10.0.2.0/24", ""]):
        # Logged for an earlier bundle of the same grant: the grant's networks are what count.
        DownloadEvent.objects.create(grant=grant, network=network, status_code=200, outcome="served",
                                     created_at=now - dt.timedelta(minutes=index))  # fmt: skip
    DownloadEvent.objects.create(grant=grant, network="10.0.9.0/24", status_code=200, outcome="served",
                                 created_at=now - dt.timedelta(hours=48))  # fmt: skip

    loaded = links.gateway_link_load(link.public_id, network="10.0.2.0/24", now=now)
    assert loaded.network_seen is True
    assert links.gateway_link_load(link.public_id, network="10.0.9.0/24", now=now).network_seen is False  # too old
    assert links.gateway_link_load(link.public_id, network="10.0.3.0/24", now=now).network_seen is False
    assert links.gateway_link_load("no-such-link", network="", now=now) is None
    assert (loaded.id, loaded.file_name, loaded.bundle_id, loaded.grant_id) == (
        link.pk, "params.json", bundle.pk, bundle.grant_id
    )  # fmt: skip
    assert loaded.bundle_expires_at == bundle.expires_at
    assert loaded.effective_status == "active"


def test_an_allowed_download_is_one_statement_on_postgresql_and_three_on_sqlite(client, bundle):
    link = _link(bundle, "params.json")
    # The network's first request also runs the leak rule; every later one is the hot path.
    assert client.get(link_path(link), REMOTE_ADDR="203.0.113.77").status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert client.get(link_path(link), REMOTE_ADDR="203.0.113.5").status_code == 200
    # Django logs no text for statements prepared on the server.
    statements = [(q["sql"] or "<prepared>").split()[0].upper() for q in captured.captured_queries]
    statements = [s for s in statements if s not in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")]
    # PostgreSQL: the SELECT, UPDATE and INSERT as one statement, prepared on the server.
    expected = ["<PREPARED>"] if connection.vendor == "postgresql" else ["SELECT", "UPDATE", "INSERT"]
    assert statements == expected
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement IS NOT NULL")
            prepared = [row[0] for row in cursor.fetchall()]
        # The one-statement path, and the take for the first request, whose network was new.
        assert sorted(sql.split()[0].upper() for sql in prepared if "access_downloadlink" in sql) == ["WITH", "WITH"]
    event = DownloadEvent.objects.filter(link=link).latest("id")
    assert (event.outcome, event.counted, event.network, event.ip_address) == (
        "served", True, "203.0.113.0/24", "203.0.113.5"
    )  # fmt: skip


# Download links go straight from SecurityMiddleware to their view (portal.middleware).


def test_download_answers_keep_the_security_headers(client, bundle):
    response = client.get(link_path(_link(bundle, "params.json")))
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_download_requests_skip_the_session_and_login(client, bundle, researcher):
    client.force_login(researcher)  # a signed-in browser following a link: its session is not read
    response = client.get(link_path(_link(bundle, "params.json")))
    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "user")


def test_other_views_under_a_short_path_prefix_still_get_the_whole_stack(client, settings, researcher):
    # Only registered views take the short path: an account page under a listed prefix still has
    # its session and login (it would fail without request.user).
    settings.BROWSERLESS_PATH_PREFIXES = ("/dl/", "/account/")
    client.force_login(researcher)
    response = client.get("/account/")
    assert response.status_code == 200
    assert researcher.email in response.content.decode()


def test_plain_answers_from_the_gateway_state_their_length(client, bundle):
    for response in (client.get("/dl/not-a-token/params.json"), client.get(bundle_manifest_path(bundle))):
        assert response["Content-Length"] == str(len(response.content))


def test_a_link_asked_for_under_a_foreign_host_name_is_refused_before_anything_is_counted(client, bundle):
    link = _link(bundle, "params.json")
    response = client.get(link_path(link), HTTP_HOST="portal.attacker.example")
    assert response.status_code == 400
    assert _used(link) == 0
    assert not DownloadEvent.objects.filter(link=link).exists()


def test_an_unexpected_error_behind_a_link_answers_one_line_of_plain_text(client, bundle, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(counting, "gateway_link_load_and_take", broken)
    monkeypatch.setattr(links, "gateway_link_load", broken)
    client.raise_request_exception = False

    response = client.get(link_path(_link(bundle, "params.json")))

    assert response.status_code == 500
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode().count("\n") == 1 and "failed on our side" in response.content.decode()
    assert b"database on fire" not in response.content


@pytest.mark.parametrize("path", ["/dl/", "/dl/only-one-part", "/dl/a/b/c"])
def test_a_path_under_dl_that_is_no_link_gets_one_line_of_plain_text(client, db, path):
    response = client.get(path)
    assert response.status_code == 404
    _assert_no_bytes(response, 404, "not valid")
    assert response.content.decode().count("\n") == 1


def test_a_request_django_refuses_before_the_gateway_is_plain_text_too(client, db):
    response = client.get("/dl/abc/params.json", HTTP_HOST="evil.example.com:1")  # not an allowed host
    _assert_no_bytes(response, 400, "could not be read")


def _corked(sock) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


@pytest.mark.skipif(
    not hasattr(socket, "TCP_CORK"),
    reason="TCP_CORK exists only on Linux (production and CI, where this runs); elsewhere files go out uncorked",
)
def test_a_file_goes_out_corked_and_the_cork_comes_off_once_it_is_sent(client, bundle, sha256_of, body_of):
    """Under gunicorn the client connection is corked while sendfile hands it the file (full segments
    only), and uncorked when the server closes the file: on a kept-alive connection a cork left on
    would hold the file's last bytes back."""
    link = _link(bundle, "tokenizer.model")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as client_side:
            server_side, _ = listener.accept()
            with server_side:
                response = client.get(link_path(link), **{"gunicorn.socket": server_side})
                assert response.status_code == 200
                assert _corked(server_side)
                assert sha256_of(body_of(response)) == served_sha256(link)  # consuming it closes it
                assert not _corked(server_side)

                head = client.head(link_path(link), **{"gunicorn.socket": server_side})
                assert head.status_code == 200 and not _corked(server_side)  # nothing to send, no cork


def test_while_a_copys_checksums_are_prepared_its_files_download_and_the_rest_waits(
    client, settings, published_demo_weights, researcher, reviewer, bundle_make, body_of
):
    """Large copies get their checksums from a Celery task after the links are made. Meanwhile the
    files download (a Range reaching the CRCs has them computed on the spot), while the checklist,
    script and manifest, which carry the checksums, answer 503 with Retry-After."""
    from access.distribution.fingerprints import weight_copy_prepare
    from access.distribution.models import WeightCopy

    settings.FINGERPRINT_INLINE_CHECKSUM_BYTES = 0  # as for a model of many gigabytes
    bundle = bundle_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)
    shard = _link(bundle)
    assert shard.copy is not None and shard.copy.prepared_at is None and shard.copy.crcs is None

    files = {entry["name"]: entry for entry in bundles.bundle_files(bundle)}
    assert files["consolidated.00.pth"]["sha256"] is None and files["checklist.chk"]["md5"] is None
    assert files["params.json"]["sha256"] == _link(bundle, "params.json").file.sha256
    from django.test import Client

    browser = Client()
    browser.force_login(researcher)
    page = browser.get(f"/grants/{bundle.grant_id}/downloads/").content.decode()
    assert "Preparing checksums" in page and "preparing checksums…" in page and "download.sh" not in page

    for path in (bundle_script_path(bundle), bundle_manifest_path(bundle), link_path(_link(bundle, "checklist.chk"))):
        waiting = client.get(path)
        assert waiting.status_code == 503 and waiting["Retry-After"] == "30"
        assert "still being computed" in waiting.content.decode()
    central_directory = shard.file.layout["central_directory_offset"]  # it holds every entry's CRC
    tail = client.get(link_path(shard), HTTP_RANGE=f"bytes={central_directory}-")
    assert tail.status_code == 206
    assert body_of(tail) == served_bytes(shard)[central_directory:]
    assert WeightCopy.objects.get(pk=shard.copy_id).crcs  # computed for that Range, and kept

    weight_copy_prepare(shard.copy_id)
    weight_copy_prepare(_link(bundle, "consolidated.01.pth").copy_id)
    assert client.get(bundle_script_path(bundle)).status_code == 200
    checklist = body_of(client.get(link_path(_link(bundle, "checklist.chk"))))
    assert f"{WeightCopy.objects.get(pk=shard.copy_id).md5}  consolidated.00.pth" in checklist.decode()


def test_a_copy_whose_master_key_was_dropped_is_refused_with_410_and_not_counted(client, settings, bundle):
    shard = _link(bundle)
    settings.FINGERPRINT_KEYS = {"another": b"a" * 32}  # the copy's key is no longer listed
    _assert_no_bytes(client.get(link_path(shard)), 410, "Create new links")
    assert _used(shard) == 0
    # New links make a copy with the key in use, and it downloads.
    fresh = _link(bundle_create(grant=bundle.grant, user=bundle.grant.user))
    assert fresh.copy.key_id == "another" and client.get(link_path(fresh)).status_code == 200


def test_ranges_of_a_marked_copy_at_random_offsets_equal_the_whole_copy(client, bundle, body_of):
    import random

    shard = _link(bundle)
    DownloadLink.objects.filter(pk=shard.pk).update(max_downloads=1000)  # this test is about bytes, not counts
    whole = body_of(client.get(link_path(shard)))
    assert whole == served_bytes(shard) and len(whole) == shard.file.size
    rng = random.Random(17)
    for _ in range(40):
        first = rng.randrange(len(whole))
        last = min(len(whole) - 1, first + rng.choice([0, 1, 63, 4096, 40_000, len(whole)]))
        response = client.get(link_path(shard), HTTP_RANGE=f"bytes={first}-{last}")
        assert response.status_code == 206 and body_of(response) == whole[first : last + 1], (first, last)
    suffix = client.get(link_path(shard), HTTP_RANGE="bytes=-777")
    assert body_of(suffix) == whole[-777:]
