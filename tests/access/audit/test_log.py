"""The audit log: how rows are written, that they never change, and the admin's view of them."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse

from access.audit.admin import AuditEventAdmin
from access.audit.models import AuditEvent
from access.audit.services import audit_event_record
from access.catalog.models import LicenseVersion
from access.catalog.services import license_publish

CHANGELIST_URL = "/admin/access/auditevent/"


def _record(**kwargs) -> AuditEvent:
    with transaction.atomic():
        return audit_event_record(**kwargs)


def _csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def audit_event(llama_catalog):
    return AuditEvent.objects.get(action="license.published")


# --- Writing --------------------------------------------------------------------------------


def test_recording_outside_a_transaction_is_refused(transactional_db, llama_catalog):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_event_record(action="test.outside", target=llama_catalog)

    assert not AuditEvent.objects.filter(action="test.outside").exists()


def test_an_event_rolled_back_with_its_change_leaves_no_row(transactional_db, llama_catalog):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit_event_record(action="test.rolled_back", target=llama_catalog)
        1 / 0  # noqa: B018  (the change fails after its record was written)

    assert not AuditEvent.objects.filter(action="test.rolled_back").exists()


def test_an_event_records_actor_target_ip_and_user_agent_from_the_request(researcher, llama_catalog):
    request = RequestFactory().post("/", REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="curl/8.5.0")
    license_version = llama_catalog.licenses.get()

    event = _record(action="test.seen", actor=researcher, target=license_version, request=request)

    event.refresh_from_db()
    assert event.actor == researcher
    assert event.actor_label == "ada@uni.example.edu"
    assert event.target_type == "access.licenseversion"
    assert event.target_id == str(license_version.pk)
    assert event.target_label == str(license_version)
    assert event.ip_address == "203.0.113.7"
    assert event.user_agent == "curl/8.5.0"


def test_a_forwarded_for_header_does_not_replace_the_address_without_a_trusted_proxy(researcher, llama_catalog):
    request = RequestFactory().post("/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1")

    event = _record(action="test.seen", actor=researcher, request=request)

    assert event.ip_address == "203.0.113.7"


def test_a_very_long_user_agent_is_cut_so_the_event_is_still_recorded(researcher):
    request = RequestFactory().post("/", HTTP_USER_AGENT="x" * 5000)

    event = _record(action="test.seen", actor=researcher, request=request)

    assert event.user_agent == "x" * 512


def test_an_event_without_a_signed_in_actor_is_recorded_as_system(db):
    from django.contrib.auth.models import AnonymousUser

    event = _record(action="test.seen", actor=AnonymousUser())

    assert event.actor is None
    assert event.actor_label == "system"


def test_the_record_keeps_the_actor_label_when_the_account_is_gone(researcher):
    event = _record(action="test.seen", actor=researcher)

    researcher.delete()

    event = AuditEvent.objects.get(pk=event.pk)
    assert event.actor_label == "ada@uni.example.edu"


# --- Append-only on PostgreSQL ----------------------------------------------------------------


def _assert_refused(statement) -> None:
    # The savepoint keeps the test's own transaction usable after the database error.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        statement()


@pytest.mark.postgres
def test_the_database_refuses_to_update_or_delete_audit_rows_through_the_orm(audit_event):
    before = AuditEvent.objects.filter(pk=audit_event.pk).values().get()

    _assert_refused(lambda: AuditEvent.objects.filter(pk=audit_event.pk).update(action="license.withdrawn"))
    audit_event.actor_label = "someone-else@example.com"
    _assert_refused(audit_event.save)
    _assert_refused(lambda: AuditEvent.objects.filter(pk=audit_event.pk).delete())
    _assert_refused(lambda: AuditEvent.objects.get(pk=audit_event.pk).delete())

    assert AuditEvent.objects.filter(pk=audit_event.pk).values().get() == before


@pytest.mark.postgres
def test_the_database_refuses_to_update_or_delete_audit_rows_with_raw_sql(audit_event):
    before = AuditEvent.objects.filter(pk=audit_event.pk).values().get()

    def update():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE access_auditevent SET action = %s WHERE id = %s", ["rewritten", audit_event.pk])

    def delete():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM access_auditevent WHERE id = %s", [audit_event.pk])

    def delete_all():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM access_auditevent")

    _assert_refused(update)
    _assert_refused(delete)
    _assert_refused(delete_all)

    assert AuditEvent.objects.filter(pk=audit_event.pk).values().get() == before


@pytest.mark.postgres
def test_the_append_only_trigger_is_installed_by_the_migrations(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'access_auditevent'::regclass AND NOT tgisinternal"
        )
        triggers = {row[0] for row in cursor.fetchall()}

    assert "access_auditevent_append_only" in triggers


# --- Admin list and CSV export ------------------------------------------------------------------


def test_admin_audit_list_filters_by_action(admin_user_client, llama_catalog):
    response = admin_user_client.get(CHANGELIST_URL, {"action__exact": "license.published"})

    assert response.status_code == 200
    changelist = response.context["cl"]
    assert changelist.result_count == 1
    assert [event.action for event in changelist.result_list] == ["license.published"]
    assert AuditEvent.objects.exclude(action="license.published").exists()


def test_csv_export_link_exports_only_the_filtered_events(admin_user_client, admin_user, llama_catalog):
    license_publish(family=llama_catalog, version="2.0", title="License", text="New terms", actor=admin_user)
    page = admin_user_client.get(CHANGELIST_URL, {"action__exact": "license.published"})
    export_url = html.unescape(re.search(r'<a href="([^"]*export\.csv[^"]*)"', page.content.decode()).group(1))

    response = admin_user_client.get(export_url)

    assert export_url.startswith(reverse("admin:access_auditevent_export"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    header, *rows = _csv_rows(response)
    assert header == AuditEventAdmin.CSV_COLUMNS
    assert [row[2] for row in rows] == ["license.published", "license.published"]
    assert [row[1] for row in rows] == ["system", "adam.admin@lab.example.org"]  # oldest first


def test_csv_export_without_filters_has_every_event(admin_user_client, llama_catalog):
    response = admin_user_client.get(reverse("admin:access_auditevent_export"))

    header, *rows = _csv_rows(response)
    assert len(rows) == AuditEvent.objects.count()


def test_csv_export_follows_the_list_search(admin_user_client, llama_catalog):
    response = admin_user_client.get(reverse("admin:access_auditevent_export"), {"q": "LLaMA 65B"})

    header, *rows = _csv_rows(response)
    assert [row[5] for row in rows] == ["LLaMA 65B"]


def test_csv_export_with_an_unknown_filter_sends_the_admin_back_to_the_list(admin_user_client, llama_catalog):
    response = admin_user_client.get(reverse("admin:access_auditevent_export"), {"no_such_field": "x"})

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL
    page = admin_user_client.get(response["Location"])
    assert "These filters are not valid" in page.content.decode()


@pytest.mark.parametrize("persona", ["reviewer_client", "researcher_client"])
def test_non_admins_can_neither_open_nor_export_the_audit_log(persona, request, llama_catalog):
    client = request.getfixturevalue(persona)

    for url in (CHANGELIST_URL, reverse("admin:access_auditevent_export")):
        response = client.get(url)
        assert response.status_code in (302, 403), url
        assert response.get("Content-Type", "").split(";")[0] != "text/csv"


def test_anonymous_visitors_cannot_export_the_audit_log(client, llama_catalog):
    response = client.get(reverse("admin:access_auditevent_export"), follow=True)

    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    assert response["Content-Type"].split(";")[0] == "text/html"


def test_admin_can_read_an_event_but_not_add_change_or_delete_one(admin_user_client, audit_event):
    change_url = f"{CHANGELIST_URL}{audit_event.pk}/change/"
    before = AuditEvent.objects.filter(pk=audit_event.pk).values().get()

    assert admin_user_client.get(change_url).status_code == 200
    assert admin_user_client.get(f"{CHANGELIST_URL}add/").status_code == 403
    assert admin_user_client.post(f"{CHANGELIST_URL}add/", {"action": "forged"}).status_code == 403
    assert admin_user_client.post(change_url, {"action": "forged"}).status_code == 403
    assert admin_user_client.get(f"{CHANGELIST_URL}{audit_event.pk}/delete/").status_code == 403
    assert admin_user_client.post(f"{CHANGELIST_URL}{audit_event.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_user_client.post(
        CHANGELIST_URL, {"action": "delete_selected", "_selected_action": [audit_event.pk], "post": "yes"}
    )

    assert AuditEvent.objects.filter(pk=audit_event.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="forged").exists()


def test_admin_audit_list_offers_no_add_button_or_bulk_delete(admin_user_client, llama_catalog):
    page = admin_user_client.get(CHANGELIST_URL).content.decode()

    assert "/admin/access/auditevent/add/" not in page
    assert 'value="delete_selected"' not in page
    assert LicenseVersion.objects.exists()
