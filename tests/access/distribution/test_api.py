"""The download links API (docs/api.md "Grants and downloads"): a researcher's script creates
links for a grant, reads them back, and downloads with them; who may not, and why not."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from urllib.parse import urlsplit

import time_machine
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access.catalog.models import ModelVariant
from access.distribution.models import DownloadBundle
from access.grants.services import grant_create, grant_revoke
from tests.access.distribution.served import served_sha256

# docs/api.md: exactly what POST /api/v1/grants/{id}/download-links answers.
BUNDLE_FIELDS = {"bundle", "expires_at", "checksums_ready", "files", "download_sh", "manifest", "wildcard_url"}
FILE_FIELDS = {"name", "size", "sha256", "md5", "url", "downloads_left", "bytes_left", "marked"}


def links_url(grant) -> str:
    return f"/api/v1/grants/{grant.pk}/download-links"


def _path(url: str) -> str:
    """The path of an absolute gateway URL, for the test client."""
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.netloc == "testserver", url
    return parts.path


def test_creating_links_answers_with_one_working_link_per_published_file(
    researcher_api, grant, published_demo_weights, settings, audit_mark, audit_actions_since, body_of, sha256_of
):
    _, source_dir, weight_files = published_demo_weights
    mark = audit_mark()

    response = researcher_api.post(links_url(grant))

    assert response.status_code == 201, response.content[:800]
    body = response.json()
    assert set(body) == BUNDLE_FIELDS
    assert [set(entry) for entry in body["files"]] == [FILE_FIELDS] * len(weight_files)
    published = {wf.name: wf for wf in weight_files}
    assert sorted(entry["name"] for entry in body["files"]) == sorted(published)
    assert body["checksums_ready"] is True  # a model this small: computed while the links were made
    assert body["wildcard_url"].startswith("http://testserver/dl/w/") and body["wildcard_url"].endswith("/*")
    links = {link.file.name: link for link in DownloadBundle.objects.get(grant=grant).links.select_related("file")}
    for entry in body["files"]:
        # The checksums are of the caller's own bytes: shards carry their fingerprint, and the
        # checklist lists those; the rest are as published.
        mine = entry["name"].startswith("consolidated.") or entry["name"] == "checklist.chk"
        assert entry["marked"] is entry["name"].startswith("consolidated.")
        assert entry["size"] == published[entry["name"]].size
        assert entry["sha256"] == served_sha256(links[entry["name"]])
        assert (entry["sha256"] != published[entry["name"]].sha256) is mine
        assert entry["downloads_left"] == settings.DOWNLOAD_LINK_MAX_DOWNLOADS
        # Its downloads x the file's size, and the resume slack: half the file for files this small.
        assert entry["bytes_left"] == settings.DOWNLOAD_LINK_MAX_DOWNLOADS * entry["size"] + entry["size"] // 2
        assert _path(entry["url"]).startswith("/dl/") and _path(entry["url"]).endswith("/" + entry["name"])
    expires_at = parse_datetime(body["expires_at"])
    assert expires_at.utcoffset() == dt.timedelta(0)
    assert abs(expires_at - (timezone.now() + dt.timedelta(hours=24))) < dt.timedelta(minutes=1)
    assert body["bundle"] == DownloadBundle.objects.get(grant=grant).public_id
    assert audit_actions_since(mark) == ["download.bundle_created"]

    # The links need no other credential: a bare client gets the very bytes that were published.
    anonymous = Client()
    for entry in body["files"]:
        downloaded = anonymous.get(_path(entry["url"]))
        assert downloaded.status_code == 200
        data = body_of(downloaded)
        assert sha256_of(data) == entry["sha256"]
        assert hashlib.md5(data).hexdigest() == entry["md5"]
        if entry["name"] in ("params.json", "tokenizer.model"):
            assert data == (source_dir / entry["name"]).read_bytes()
    script = anonymous.get(_path(body["download_sh"]))
    assert script.status_code == 200
    assert body_of(script).startswith(b"#!/bin/sh")
    manifest = json.loads(body_of(anonymous.get(_path(body["manifest"]))))
    assert {f["url"] for f in manifest["files"]} == {entry["url"] for entry in body["files"]}


def test_the_current_links_read_back_with_downloads_left(researcher_api, grant):
    created = researcher_api.post(links_url(grant)).json()
    first = next(entry for entry in created["files"] if entry["name"] == "params.json")
    assert Client().get(_path(first["url"])).status_code == 200

    response = researcher_api.get(links_url(grant))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == BUNDLE_FIELDS
    assert body["bundle"] == created["bundle"]
    left = {entry["name"]: entry["downloads_left"] for entry in body["files"]}
    assert left["params.json"] == first["downloads_left"] - 1
    assert left["tokenizer.model"] == first["downloads_left"]
    bytes_left = {entry["name"]: entry["bytes_left"] for entry in body["files"]}
    assert bytes_left["params.json"] == first["bytes_left"] - first["size"]


def test_creating_links_again_retires_the_previous_ones(researcher_api, grant, body_of):
    old = researcher_api.post(links_url(grant)).json()

    new = researcher_api.post(links_url(grant)).json()

    assert new["bundle"] != old["bundle"]
    old_url = next(entry["url"] for entry in old["files"] if entry["name"] == "params.json")
    new_url = next(entry["url"] for entry in new["files"] if entry["name"] == "params.json")
    refused = Client().get(_path(old_url))
    assert refused.status_code == 410
    assert b"newest links" in body_of(refused)
    assert Client().get(_path(new_url)).status_code == 200
    assert researcher_api.get(links_url(grant)).json()["bundle"] == new["bundle"]


def test_reading_links_before_any_or_after_expiry_is_404_saying_how_to_create_them(researcher_api, grant, assert_error):
    error = assert_error(researcher_api.get(links_url(grant)), 404, "not_found")
    assert f"POST /api/v1/grants/{grant.pk}/download-links" in error["message"]

    researcher_api.post(links_url(grant))
    with time_machine.travel(timezone.now() + dt.timedelta(hours=25)):
        assert_error(researcher_api.get(links_url(grant)), 404, "not_found")
        # ...and new links come without a new request.
        assert researcher_api.post(links_url(grant)).status_code == 201


def test_another_users_grant_is_as_absent_as_a_missing_one(outsider, grant, bearer_client, assert_error):
    outsider_api = bearer_client(outsider)

    assert_error(outsider_api.post(links_url(grant)), 404, "not_found")
    assert_error(outsider_api.get(links_url(grant)), 404, "not_found")
    assert_error(outsider_api.post("/api/v1/grants/999999/download-links"), 404, "not_found")
    assert not DownloadBundle.objects.exists()


def test_a_grant_waiting_for_the_license_gets_no_links_and_is_told_to_accept_it(
    researcher, researcher_api, reviewer, published_demo_weights, assert_error
):
    variant, _, _ = published_demo_weights
    grant = grant_create(user=researcher, variant=variant, actor=reviewer, reason="Collaborator.")

    error = assert_error(researcher_api.post(links_url(grant)), 409, "grant_not_usable")

    assert "Accept" in error["message"] and "license" in error["message"]
    assert not DownloadBundle.objects.exists()


def test_a_revoked_grant_gets_no_links(researcher_api, reviewer, grant, assert_error):
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    error = assert_error(researcher_api.post(links_url(grant)), 409, "grant_not_usable")

    assert "revoked" in error["message"]
    assert not DownloadBundle.objects.exists()


def test_nothing_published_yet_is_a_conflict_that_needs_no_new_request(
    researcher, researcher_api, reviewer, llama_catalog, active_grant_make, assert_error
):
    grant = active_grant_make(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-demo-tiny"), reviewer=reviewer
    )

    error = assert_error(researcher_api.post(links_url(grant)), 409, "nothing_published")

    assert "not need a new request" in error["message"]
    assert not DownloadBundle.objects.exists()


def test_download_links_need_credentials(api_client, grant, assert_error):
    assert_error(api_client.post(links_url(grant)), 401)
    assert_error(api_client.get(links_url(grant)), 401)
    assert not DownloadBundle.objects.exists()


def test_download_links_answer_get_and_post_only(researcher_api, grant, assert_error):
    assert_error(researcher_api.delete(links_url(grant)), 405, "method_not_allowed")
    assert_error(researcher_api.put(links_url(grant), {}, format="json"), 405, "method_not_allowed")


def test_the_schema_documents_the_download_links(api_client, db):
    response = api_client.get("/api/schema/", {"format": "json"})

    schema = json.loads(response.content)
    (path,) = [p for p in schema["paths"] if p.startswith("/api/v1/grants/") and p.endswith("/download-links")]
    operations = schema["paths"][path]
    assert {"get", "post"} <= set(operations)
    assert {"201", "404", "409"} <= set(operations["post"]["responses"])
    bundle_schema = schema["components"]["schemas"]["DownloadBundle"]
    assert set(bundle_schema["properties"]) == BUNDLE_FIELDS
