"""The applicant's API (docs/api.md "Access requests"): apply, follow one's requests,
edit while more information is requested, resubmit, withdraw. The grants API is tested in
tests/access/grants/test_api.py, the whole loop through the API in tests/access/test_api_workflow.py;
the shared helpers (``api_apply``, ``decide``, ``assert_error``...) are fixtures of
tests/access/conftest.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.services import license_publish
from access.requests.models import AccessRequest, RequestStatus, ScreeningFlag
from access.review.services import access_request_note_add
from tests.factories import UserFactory

# docs/api.md: what POST /api/v1/access-requests answers with, at least.
CREATED_FIELDS = {"id", "reference", "status", "variants", "created_at"}
# docs/api.md: GET /api/v1/access-requests/{id}, at least.
DETAIL_FIELDS = {
    "id",
    "reference",
    "status",
    "variants",
    "queue_position",
    "estimated_decision_at",
    "messages",
    "history",
}


# --- Applying ---------------------------------------------------------------------------


def test_applying_answers_201_with_a_reference_and_an_estimate(
    researcher_api, researcher, llama_catalog, application_body, api_application
):
    response = researcher_api.post(
        "/api/v1/access-requests", application_body(["llama-7b", "llama-13b"]), format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert CREATED_FIELDS | DETAIL_FIELDS <= set(body)
    assert body["reference"].startswith("AR-")
    assert body["variants"] == ["llama-7b", "llama-13b"]
    assert body["queue_position"] == 1
    assert body["estimated_decision_at"] is not None
    access_request = AccessRequest.objects.get(applicant=researcher)
    assert access_request.reference == body["reference"]
    assert access_request.publications == api_application["publications"]
    assert access_request.country.code == "GB"


def test_applying_leaves_the_submitted_audit_event_with_the_callers_address(
    researcher_api, llama_catalog, audit_mark, application_body, audit_actions_since
):
    mark = audit_mark()

    researcher_api.post("/api/v1/access-requests", application_body(), format="json", REMOTE_ADDR="203.0.113.9")

    assert audit_actions_since(mark) == ["access_request.submitted"]
    event = AuditEvent.objects.get(action="access_request.submitted")
    assert event.ip_address == "203.0.113.9"


def test_a_browser_session_can_apply_too(researcher_client, researcher, llama_catalog, application_body):
    response = researcher_client.post("/api/v1/access-requests", application_body(), content_type="application/json")

    assert response.status_code == 201
    assert AccessRequest.objects.filter(applicant=researcher).count() == 1


def test_an_empty_application_lists_every_missing_field(researcher_api, llama_catalog, assert_error):
    response = researcher_api.post("/api/v1/access-requests", {}, format="json")

    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {
        "variants",
        "license_id",
        "full_name",
        "affiliation",
        "organization_type",
        "position",
        "country",
        "use_case",
    }
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"variants": ["llama-7b", "llama-1000b"]}, "variants", "llama-1000b"),
        ({"license_id": 999_999}, "license_id", "999999"),
        ({"organization_type": "hedge_fund"}, "organization_type", "valid choice"),
        ({"country": "XX"}, "country", "ISO 3166-1"),
        ({"publications": ["not a link"]}, "publications", "https://"),
        ({"use_case": "For research."}, "use_case", "at least"),
        ({"full_name": "x" * 201}, "full_name", "200"),
        ({"variants": []}, "variants", "at least one"),
        ({"variants": "llama-7b"}, "variants", "list"),
    ],
)
def test_bad_input_is_reported_on_its_field_and_nothing_is_stored(
    researcher_api,
    llama_catalog,
    overrides,
    field,
    words,
    audit_mark,
    application_body,
    assert_error,
    audit_actions_since,
):
    mark = audit_mark()

    response = researcher_api.post("/api/v1/access-requests", application_body(**overrides), format="json")

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field])
    assert not AccessRequest.objects.exists()
    assert audit_actions_since(mark) == []


def test_country_code_may_be_given_in_lower_case(researcher_api, researcher, llama_catalog, api_apply):
    api_apply(researcher_api, country="de")

    assert AccessRequest.objects.get(applicant=researcher).country.code == "DE"


def test_a_second_open_request_for_the_same_model_is_refused(
    researcher_api, llama_catalog, api_apply, application_body, assert_error
):
    first = api_apply(researcher_api, ["llama-7b"])

    response = researcher_api.post(
        "/api/v1/access-requests", application_body(["llama-13b", "llama-7b"]), format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert first["reference"] in error["fields"]["variants"][0]
    assert AccessRequest.objects.count() == 1


def test_applying_again_after_withdrawing_is_allowed(researcher_api, llama_catalog, api_apply):
    first = api_apply(researcher_api)
    researcher_api.post(f"/api/v1/access-requests/{first['id']}/withdraw")

    second = api_apply(researcher_api)

    assert second["id"] != first["id"]


def test_applying_with_an_outdated_license_names_the_current_one(
    researcher_api, llama_catalog, current_license_id, application_body, assert_error
):
    old_license_id = current_license_id()
    new_license = license_publish(family=llama_catalog, version="2.0", title="License 2.0", text="New terms.")

    response = researcher_api.post(
        "/api/v1/access-requests", application_body(license_id=old_license_id), format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert f"id {new_license.pk}" in error["fields"]["license_id"][0]
    assert not AccessRequest.objects.exists()


def test_applying_needs_credentials(api_client, llama_catalog, application_body, assert_error):
    response = api_client.post("/api/v1/access-requests", application_body(), format="json")

    assert_error(response, 401)
    assert not AccessRequest.objects.exists()


# --- Following one's requests -----------------------------------------------------------


def test_the_list_shows_only_the_callers_requests_newest_first(
    researcher_api, outsider, llama_catalog, api_apply, bearer_client
):
    api_apply(bearer_client(outsider), ["llama-65b"])
    older = api_apply(researcher_api, ["llama-7b"])
    newer = api_apply(researcher_api, ["llama-13b"])

    response = researcher_api.get("/api/v1/access-requests")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [r["id"] for r in body["results"]] == [newer["id"], older["id"]]


def test_the_list_is_paginated(researcher_api, llama_catalog, api_apply):
    for slug in ("llama-7b", "llama-13b", "llama-33b"):
        api_apply(researcher_api, [slug])

    body = researcher_api.get("/api/v1/access-requests", {"page_size": 2}).json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"].endswith("page=2&page_size=2")


def test_the_detail_shows_status_queue_position_messages_and_history(
    researcher_api, reviewer_api, llama_catalog, api_apply, bearer_client, decide
):
    first = api_apply(bearer_client(UserFactory()), ["llama-7b"])
    applied = api_apply(researcher_api)
    decide(reviewer_api, first["id"], "approve")

    detail = researcher_api.get(f"/api/v1/access-requests/{applied['id']}").json()

    assert DETAIL_FIELDS <= set(detail)
    assert detail["queue_position"] == 1
    assert dt.datetime.fromisoformat(detail["estimated_decision_at"]) > timezone.now()
    assert detail["messages"] == []
    assert [(entry["action"], entry["label"]) for entry in detail["history"]] == [
        ("access_request.submitted", "Submitted")
    ]


def test_a_decided_request_has_no_queue_position(researcher_api, reviewer_api, llama_catalog, api_apply, decide):
    applied = api_apply(researcher_api)
    decide(reviewer_api, applied["id"], "reject", reason="The use case is outside the license's scope.")

    detail = researcher_api.get(f"/api/v1/access-requests/{applied['id']}").json()

    assert detail["status"] == "rejected"
    assert detail["queue_position"] is None
    assert detail["estimated_decision_at"] is None
    assert detail["rejection_reason"] == "The use case is outside the license's scope."
    assert detail["messages"][-1] == {
        "kind": "decision",
        "text": "The use case is outside the license's scope.",
        "created_at": detail["messages"][-1]["created_at"],
        "author_role": "reviewer",
    }


def test_the_applicant_never_sees_notes_flags_or_reviewer_emails(
    reviewer, reviewer_api, llama_catalog, api_apply, bearer_client, decide
):
    researcher_api = bearer_client(UserFactory(email="ada.lovelace@gmail.com"))
    applied = api_apply(researcher_api)  # a free-mail address is flagged
    access_request = AccessRequest.objects.get(pk=applied["id"])
    assert ScreeningFlag.objects.filter(request=access_request).exists()
    access_request_note_add(access_request=access_request, author=reviewer, text="Check the lab page, NOTE-SECRET.")
    reviewer_api.post(f"/api/v1/review/requests/{applied['id']}/claim")
    decide(reviewer_api, applied["id"], "request_info", reason="Which cluster?")

    response = researcher_api.get(f"/api/v1/access-requests/{applied['id']}")

    content = response.content.decode()
    assert "NOTE-SECRET" not in content
    assert "free_mail_domain" not in content and "flags" not in response.json()
    assert reviewer.email not in content
    assert "notes" not in response.json() and "decisions" not in response.json()
    history = [entry["action"] for entry in response.json()["history"]]
    assert "access_request.note_added" not in history and "access_request.flagged" not in history
    assert "access_request.assigned" not in history
    assert response.json()["messages"][0]["author_role"] == "reviewer"


def test_someone_elses_request_is_not_found(
    researcher_api, outsider, llama_catalog, api_apply, bearer_client, assert_error
):
    theirs = api_apply(bearer_client(outsider))

    response = researcher_api.get(f"/api/v1/access-requests/{theirs['id']}")

    assert_error(response, 404, "not_found")


def test_deleting_a_request_is_not_a_method_of_the_api(researcher_api, llama_catalog, api_apply, assert_error):
    applied = api_apply(researcher_api)

    response = researcher_api.delete(f"/api/v1/access-requests/{applied['id']}")

    assert_error(response, 405, "method_not_allowed")
    assert AccessRequest.objects.filter(pk=applied["id"]).exists()


# --- Editing and resubmitting -----------------------------------------------------------


@pytest.fixture
def info_requested(researcher_api, reviewer_api, llama_catalog, api_apply, decide) -> dict:
    applied = api_apply(researcher_api)
    decide(reviewer_api, applied["id"], "request_info", reason="Name your cluster, please.")
    return applied


def test_patching_changes_only_the_fields_given(
    researcher_api, info_requested, audit_mark, api_application, use_case_text, audit_actions_since
):
    mark = audit_mark()

    response = researcher_api.patch(
        f"/api/v1/access-requests/{info_requested['id']}",
        {"position": "Lecturer", "publications": ["https://lab.example.edu/ada", ""]},
        format="json",
    )

    assert response.status_code == 200, response.json()
    access_request = AccessRequest.objects.get(pk=info_requested["id"])
    assert access_request.position == "Lecturer"
    assert access_request.publications == ["https://lab.example.edu/ada"]
    assert access_request.full_name == api_application["full_name"]
    assert access_request.country.code == "GB"
    assert access_request.use_case == use_case_text
    assert access_request.status == RequestStatus.INFO_REQUESTED
    assert audit_actions_since(mark) == ["access_request.edited"]
    assert AuditEvent.objects.get(action="access_request.edited").details["fields"] == ["position", "publications"]


def test_patching_with_bad_input_reports_the_field_and_changes_nothing(
    researcher_api, info_requested, assert_error, use_case_text
):
    response = researcher_api.patch(
        f"/api/v1/access-requests/{info_requested['id']}", {"use_case": "Too short."}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "use_case" in error["fields"]
    assert AccessRequest.objects.get(pk=info_requested["id"]).use_case == use_case_text


def test_the_requested_models_cannot_be_patched(researcher_api, info_requested, assert_error):
    response = researcher_api.patch(
        f"/api/v1/access-requests/{info_requested['id']}", {"variants": ["llama-65b"]}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "withdraw" in error["fields"]["variants"][0]


def test_an_empty_patch_is_refused_and_leaves_no_audit_event(
    researcher_api, info_requested, audit_mark, assert_error, audit_actions_since
):
    mark = audit_mark()

    response = researcher_api.patch(f"/api/v1/access-requests/{info_requested['id']}", {}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "at least one field" in error["fields"]["non_field_errors"][0]
    assert audit_actions_since(mark) == []


def test_patching_outside_info_requested_is_a_conflict(
    researcher_api, llama_catalog, api_apply, audit_mark, assert_error, api_application, audit_actions_since
):
    applied = api_apply(researcher_api)
    mark = audit_mark()

    response = researcher_api.patch(
        f"/api/v1/access-requests/{applied['id']}", {"position": "Professor"}, format="json"
    )

    error = assert_error(response, 409, "not_editable")
    assert "more information" in error["message"]
    assert AccessRequest.objects.get(pk=applied["id"]).position == api_application["position"]
    assert audit_actions_since(mark) == []


def test_resubmitting_starts_a_new_round_and_keeps_the_reply(researcher_api, info_requested):
    response = researcher_api.post(
        f"/api/v1/access-requests/{info_requested['id']}/resubmit", {"message": "Cluster: Babbage."}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "submitted"
    assert [(m["kind"], m["author_role"]) for m in body["messages"]] == [
        ("info_request", "reviewer"),
        ("applicant_reply", "applicant"),
    ]
    assert AccessRequest.objects.get(pk=info_requested["id"]).review_round == 2


def test_resubmitting_without_a_message_is_fine(researcher_api, info_requested):
    response = researcher_api.post(f"/api/v1/access-requests/{info_requested['id']}/resubmit")

    assert response.status_code == 200
    assert response.json()["status"] == "submitted"


def test_resubmitting_a_request_in_the_queue_is_a_conflict(researcher_api, llama_catalog, api_apply, assert_error):
    applied = api_apply(researcher_api)

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/resubmit")

    assert_error(response, 409, "not_resubmittable")


def test_resubmit_answers_only_post(researcher_api, info_requested, assert_error):
    response = researcher_api.get(f"/api/v1/access-requests/{info_requested['id']}/resubmit")

    assert_error(response, 405, "method_not_allowed")


# --- Withdrawing ------------------------------------------------------------------------


def test_withdrawing_closes_the_request(researcher_api, llama_catalog, api_apply, audit_mark, audit_actions_since):
    applied = api_apply(researcher_api)
    mark = audit_mark()

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    assert response.json()["queue_position"] is None
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.WITHDRAWN
    assert audit_actions_since(mark) == ["access_request.withdrawn"]


def test_withdrawing_twice_is_a_conflict(
    researcher_api, llama_catalog, api_apply, audit_mark, assert_error, audit_actions_since
):
    applied = api_apply(researcher_api)
    researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")
    mark = audit_mark()

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert_error(response, 409, "not_open")
    assert audit_actions_since(mark) == []


def test_withdraw_answers_only_post(researcher_api, llama_catalog, api_apply, assert_error):
    applied = api_apply(researcher_api)

    response = researcher_api.get(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert_error(response, 405, "method_not_allowed")
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.SUBMITTED
