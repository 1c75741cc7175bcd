"""License versions: publishing, which one is in force, the API and the admin."""

from __future__ import annotations

import datetime as dt
import hashlib
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import LicenseVersion
from access.catalog.selectors import license_current
from access.catalog.services import license_publish

ADD_URL = "/admin/access/licenseversion/add/"
CRLF_TEXT = "# Terms\r\n\r\nUse it for research only.\r\n"
LF_TEXT = "# Terms\n\nUse it for research only.\n"


def _change_url(license_version) -> str:
    return f"/admin/access/licenseversion/{license_version.pk}/change/"


def _delete_url(license_version) -> str:
    return f"/admin/access/licenseversion/{license_version.pk}/delete/"


def _admin_add_form(family, *, version="2.0", text=CRLF_TEXT, effective_at=None) -> dict:
    effective_at = effective_at or timezone.now()
    return {
        "family": family.pk,
        "version": version,
        "title": "LLaMA Non-Commercial Research License",
        "text": text,
        "effective_at_0": effective_at.strftime("%Y-%m-%d"),
        "effective_at_1": effective_at.strftime("%H:%M:%S"),
    }


# --- license_publish ------------------------------------------------------------------


def test_publishing_stores_the_sha256_of_the_text_with_unix_line_endings(llama_catalog):
    published = license_publish(family=llama_catalog, version="2.0", title="License", text=CRLF_TEXT)

    assert published.text == LF_TEXT
    assert published.sha256 == hashlib.sha256(LF_TEXT.encode()).hexdigest()


def test_the_same_text_has_the_same_digest_however_it_was_typed(llama_catalog):
    crlf = license_publish(family=llama_catalog, version="2.0", title="License", text=CRLF_TEXT)
    lf = license_publish(family=llama_catalog, version="2.1", title="License", text=LF_TEXT)

    assert crlf.sha256 == lf.sha256


def test_publishing_an_existing_version_again_is_refused(llama_catalog):
    with pytest.raises(ValidationError) as excinfo:
        license_publish(family=llama_catalog, version="1.0", title="License", text="Other terms")

    assert "version" in excinfo.value.message_dict
    assert LicenseVersion.objects.filter(family=llama_catalog).count() == 1


def test_a_version_padded_with_spaces_is_still_the_same_version(llama_catalog):
    with pytest.raises(ValidationError):
        license_publish(family=llama_catalog, version=" 1.0 ", title="License", text="Other terms")

    assert LicenseVersion.objects.filter(family=llama_catalog).count() == 1


def test_publishing_writes_a_license_published_audit_event(llama_catalog, admin_user):
    published = license_publish(
        family=llama_catalog, version="2.0", title="License", text=LF_TEXT, actor=admin_user
    )

    event = AuditEvent.objects.get(action="license.published", target_id=str(published.pk))
    assert event.target_type == "access.licenseversion"
    assert event.actor == admin_user
    assert event.actor_label == admin_user.email
    assert event.details["version"] == "2.0"
    assert event.details["sha256"] == published.sha256
    assert published.published_by == admin_user


# --- Which version is current -------------------------------------------------------------


def test_the_current_license_is_the_latest_that_has_taken_effect(llama_catalog):
    now = timezone.now()
    older = license_publish(
        family=llama_catalog, version="1.1", title="License", text="v1.1", effective_at=now - dt.timedelta(days=30)
    )
    latest = license_publish(
        family=llama_catalog, version="1.2", title="License", text="v1.2", effective_at=now - dt.timedelta(days=1)
    )

    assert license_current(llama_catalog) == latest
    assert older != latest


def test_a_future_dated_license_becomes_current_only_once_its_date_passes(llama_catalog, api_client):
    version_one = license_current(llama_catalog)
    starts = timezone.now() + dt.timedelta(days=7)
    version_two = license_publish(
        family=llama_catalog, version="2.0", title="License", text="New terms", effective_at=starts
    )

    assert license_current(llama_catalog) == version_one
    assert api_client.get("/api/v1/models/llama-7b").json()["license"]["id"] == version_one.pk

    with mock.patch("django.utils.timezone.now", return_value=starts + dt.timedelta(minutes=1)):
        assert license_current(llama_catalog) == version_two
        assert api_client.get("/api/v1/models/llama-7b").json()["license"]["id"] == version_two.pk


def test_license_page_marks_a_superseded_version(client, llama_catalog):
    version_one = license_current(llama_catalog)
    license_publish(family=llama_catalog, version="2.0", title="License", text="New terms")

    response = client.get(f"/licenses/{version_one.pk}/")

    assert response.status_code == 200
    assert "This is not the version in force" in response.content.decode()


# --- API ----------------------------------------------------------------------------------


def test_license_api_returns_the_full_version(api_client, llama_catalog):
    current = license_current(llama_catalog)

    response = api_client.get(f"/api/v1/licenses/{current.pk}")

    assert response.status_code == 200
    body = response.json()
    assert {"id", "family", "version", "sha256", "text", "effective_at"} <= set(body)
    assert body["id"] == current.pk
    assert body["family"] == "llama"
    assert body["version"] == "1.0"
    assert body["sha256"] == current.sha256
    assert body["sha256"] == hashlib.sha256(body["text"].encode()).hexdigest()
    assert body["effective_at"] == "2023-02-24T00:00:00Z"


def test_license_api_answers_404_with_the_error_body_for_an_unknown_id(api_client, llama_catalog):
    response = api_client.get("/api/v1/licenses/999999")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- Admin --------------------------------------------------------------------------------


def test_admin_publishes_a_new_version_through_the_admin_form(admin_user_client, admin_user, llama_catalog):
    response = admin_user_client.post(ADD_URL, _admin_add_form(llama_catalog))

    assert response.status_code == 302, response.content.decode()[:2000]
    published = LicenseVersion.objects.get(family=llama_catalog, version="2.0")
    assert published.text == LF_TEXT
    assert published.sha256 == hashlib.sha256(LF_TEXT.encode()).hexdigest()
    assert published.published_by == admin_user
    event = AuditEvent.objects.get(action="license.published", target_id=str(published.pk))
    assert event.actor == admin_user
    assert event.actor_label == "adam.admin@lab.example.org"
    assert event.ip_address == "127.0.0.1"


def test_admin_form_refuses_a_version_that_already_exists(admin_user_client, llama_catalog):
    response = admin_user_client.post(ADD_URL, _admin_add_form(llama_catalog, version="1.0"))

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert LicenseVersion.objects.filter(family=llama_catalog).count() == 1
    assert AuditEvent.objects.filter(action="license.published").count() == 1


def test_admin_can_read_but_not_change_a_published_version(admin_user_client, llama_catalog):
    current = license_current(llama_catalog)

    page = admin_user_client.get(_change_url(current))
    response = admin_user_client.post(
        _change_url(current), _admin_add_form(llama_catalog, version="1.0", text="Rewritten terms")
    )

    assert page.status_code == 200
    assert 'name="text"' not in page.content.decode()  # shown read-only
    assert response.status_code == 403
    current.refresh_from_db()
    assert current.text != "Rewritten terms\n"
    assert current.sha256 == hashlib.sha256(current.text.encode()).hexdigest()


def test_admin_cannot_delete_a_published_version(admin_user_client, llama_catalog):
    current = license_current(llama_catalog)

    assert admin_user_client.get(_delete_url(current)).status_code == 403
    assert admin_user_client.post(_delete_url(current), {"post": "yes"}).status_code == 403
    admin_user_client.post(
        "/admin/access/licenseversion/", {"action": "delete_selected", "_selected_action": [current.pk], "post": "yes"}
    )

    assert LicenseVersion.objects.filter(pk=current.pk).exists()


def test_reviewer_cannot_publish_a_license(reviewer_client, reviewer, llama_catalog):
    response = reviewer_client.post(ADD_URL, _admin_add_form(llama_catalog))

    assert response.status_code in (302, 403)
    assert not reviewer.has_perm("access.publish_license")
    assert not LicenseVersion.objects.filter(version="2.0").exists()


def test_researcher_cannot_publish_a_license(researcher_client, llama_catalog):
    response = researcher_client.post(ADD_URL, _admin_add_form(llama_catalog))

    assert response.status_code in (302, 403)
    assert not LicenseVersion.objects.filter(version="2.0").exists()
