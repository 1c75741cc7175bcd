"""The applicant's API (docs/api.md "Access requests" and "Grants"): apply, follow,
edit while more information is requested, resubmit, withdraw; grants and
license acceptance. The whole loop runs through the API alone.

The helpers at the top (``APPLICATION``, ``api_apply``, ``new_audit_actions``...)
are shared by the other API tests of the workflow."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.db.models import Max
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.catalog.services import license_publish
from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from access.grants.services import grant_create, grant_revoke
from access.requests.models import AccessRequest, RequestStatus, ScreeningFlag
from access.review.services import access_request_note_add
from tests.conftest import bearer_client
from tests.factories import UserFactory

# Long enough to raise no "short use case" screening flag (SCREENING_SHORT_USE_CASE_CHARS, 400).
USE_CASE = (
    "We study how factual knowledge is stored in the feed-forward layers of large language models. "
    "With the weights we will run causal tracing and activation patching on LLaMA, compare the "
    "location of stored facts across model sizes, and test whether targeted edits generalise to "
    "paraphrases. All experiments run on our university cluster; results, code and evaluation "
    "data will be published openly, and the weights will never leave the cluster or be shared."
)
APPLICATION = {
    "full_name": "Ada Lovelace",
    "affiliation": "University of Example",
    "organization_type": "academic",
    "position": "Postdoctoral researcher",
    "country": "GB",
    "use_case": USE_CASE,
    "publications": ["https://scholar.example.org/ada"],
}
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
GRANT_FIELDS = {"id", "variant", "status", "license_id_required", "expires_at"}


def current_license_id() -> int:
    return license_current(ModelVariant.objects.get(slug="llama-7b").family).pk


def application_body(variants=("llama-7b",), **overrides) -> dict:
    return {**APPLICATION, "variants": list(variants), "license_id": current_license_id(), **overrides}


def api_apply(api, variants=("llama-7b",), **overrides) -> dict:
    response = api.post("/api/v1/access-requests", application_body(variants, **overrides), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def decide(api, request_id: int, decision: str, **body):
    return api.post(f"/api/v1/review/requests/{request_id}/decision", {"decision": decision, **body}, format="json")


def assert_error(response, status: int, code: str | None = None) -> dict:
    """docs/api.md's error body: {"error": {"code", "message", "fields"?}} with the status."""
    assert response.status_code == status, response.content[:800]
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def audit_mark() -> int:
    return AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0


def new_audit_actions(mark: int) -> list[str]:
    return sorted(AuditEvent.objects.filter(pk__gt=mark).values_list("action", flat=True))


@pytest.fixture
def researcher_api(researcher):
    return bearer_client(researcher)


@pytest.fixture
def reviewer_api(reviewer):
    return bearer_client(reviewer)


# --- The whole loop ---------------------------------------------------------------------


def test_the_whole_loop_runs_through_the_api_alone(researcher_api, reviewer_api, researcher, llama_catalog):
    applied = api_apply(researcher_api)
    request_id = applied["id"]
    assert applied["status"] == "submitted"

    response = decide(reviewer_api, request_id, "request_info", reason="Which cluster will hold the weights?")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "info_requested"

    detail = researcher_api.get(f"/api/v1/access-requests/{request_id}").json()
    assert detail["status"] == "info_requested"
    assert detail["messages"][-1]["kind"] == "info_request"
    assert detail["messages"][-1]["text"] == "Which cluster will hold the weights?"

    edited_use_case = USE_CASE + " The weights stay on the university's air-gapped cluster 'Babbage'."
    response = researcher_api.patch(
        f"/api/v1/access-requests/{request_id}", {"use_case": edited_use_case}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["use_case"] == edited_use_case

    response = researcher_api.post(
        f"/api/v1/access-requests/{request_id}/resubmit", {"message": "Added the cluster."}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "submitted"

    response = decide(reviewer_api, request_id, "approve")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"

    grants = researcher_api.get("/api/v1/grants").json()["results"]
    assert [(g["variant"], g["status"]) for g in grants] == [("llama-7b", "license_required")]
    assert grants[0]["license_id_required"] == current_license_id()

    response = researcher_api.post(
        f"/api/v1/grants/{grants[0]['id']}/accept-license",
        {"license_id": grants[0]["license_id_required"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "active"
    assert response.json()["license_id_required"] is None

    assert Grant.objects.get(user=researcher).status == GrantStatus.ACTIVE
    history = [
        entry["action"] for entry in researcher_api.get(f"/api/v1/access-requests/{request_id}").json()["history"]
    ]
    assert history == [
        "access_request.submitted",
        "access_request.info_requested",
        "access_request.edited",
        "access_request.resubmitted",
        "access_request.approved",
    ]


# --- Applying ---------------------------------------------------------------------------


def test_applying_answers_201_with_a_reference_and_an_estimate(researcher_api, researcher, llama_catalog):
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
    assert access_request.publications == APPLICATION["publications"]
    assert access_request.country.code == "GB"


def test_applying_leaves_the_submitted_audit_event_with_the_callers_address(researcher_api, llama_catalog):
    mark = audit_mark()

    researcher_api.post("/api/v1/access-requests", application_body(), format="json", REMOTE_ADDR="203.0.113.9")

    assert new_audit_actions(mark) == ["access_request.submitted"]
    event = AuditEvent.objects.get(action="access_request.submitted")
    assert event.ip_address == "203.0.113.9"


def test_a_browser_session_can_apply_too(researcher_client, researcher, llama_catalog):
    response = researcher_client.post("/api/v1/access-requests", application_body(), content_type="application/json")

    assert response.status_code == 201
    assert AccessRequest.objects.filter(applicant=researcher).count() == 1


def test_an_empty_application_lists_every_missing_field(researcher_api, llama_catalog):
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
    researcher_api, llama_catalog, overrides, field, words
):
    mark = audit_mark()

    response = researcher_api.post("/api/v1/access-requests", application_body(**overrides), format="json")

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert words in " ".join(error["fields"][field])
    assert not AccessRequest.objects.exists()
    assert new_audit_actions(mark) == []


def test_country_code_may_be_given_in_lower_case(researcher_api, researcher, llama_catalog):
    api_apply(researcher_api, country="de")

    assert AccessRequest.objects.get(applicant=researcher).country.code == "DE"


def test_a_second_open_request_for_the_same_model_is_refused(researcher_api, llama_catalog):
    first = api_apply(researcher_api, ["llama-7b"])

    response = researcher_api.post(
        "/api/v1/access-requests", application_body(["llama-13b", "llama-7b"]), format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert first["reference"] in error["fields"]["variants"][0]
    assert AccessRequest.objects.count() == 1


def test_applying_again_after_withdrawing_is_allowed(researcher_api, llama_catalog):
    first = api_apply(researcher_api)
    researcher_api.post(f"/api/v1/access-requests/{first['id']}/withdraw")

    second = api_apply(researcher_api)

    assert second["id"] != first["id"]


def test_applying_with_an_outdated_license_names_the_current_one(researcher_api, llama_catalog):
    old_license_id = current_license_id()
    new_license = license_publish(family=llama_catalog, version="2.0", title="License 2.0", text="New terms.")

    response = researcher_api.post(
        "/api/v1/access-requests", application_body(license_id=old_license_id), format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert f"id {new_license.pk}" in error["fields"]["license_id"][0]
    assert not AccessRequest.objects.exists()


def test_applying_needs_credentials(api_client, llama_catalog):
    response = api_client.post("/api/v1/access-requests", application_body(), format="json")

    assert_error(response, 401)
    assert not AccessRequest.objects.exists()


# --- Following one's requests -----------------------------------------------------------


def test_the_list_shows_only_the_callers_requests_newest_first(researcher_api, outsider, llama_catalog):
    api_apply(bearer_client(outsider), ["llama-65b"])
    older = api_apply(researcher_api, ["llama-7b"])
    newer = api_apply(researcher_api, ["llama-13b"])

    response = researcher_api.get("/api/v1/access-requests")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [r["id"] for r in body["results"]] == [newer["id"], older["id"]]


def test_the_list_is_paginated(researcher_api, llama_catalog):
    for slug in ("llama-7b", "llama-13b", "llama-33b"):
        api_apply(researcher_api, [slug])

    body = researcher_api.get("/api/v1/access-requests", {"page_size": 2}).json()

    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"].endswith("page=2&page_size=2")


def test_the_detail_shows_status_queue_position_messages_and_history(researcher_api, reviewer_api, llama_catalog):
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


def test_a_decided_request_has_no_queue_position(researcher_api, reviewer_api, llama_catalog):
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


def test_the_applicant_never_sees_notes_flags_or_reviewer_emails(researcher_api, reviewer, reviewer_api, llama_catalog):
    applied = api_apply(researcher_api, use_case=USE_CASE[:200])  # short enough to be flagged
    access_request = AccessRequest.objects.get(pk=applied["id"])
    assert ScreeningFlag.objects.filter(request=access_request).exists()
    access_request_note_add(access_request=access_request, author=reviewer, text="Check the lab page, NOTE-SECRET.")
    reviewer_api.post(f"/api/v1/review/requests/{applied['id']}/claim")
    decide(reviewer_api, applied["id"], "request_info", reason="Which cluster?")

    response = researcher_api.get(f"/api/v1/access-requests/{applied['id']}")

    content = response.content.decode()
    assert "NOTE-SECRET" not in content
    assert "short_use_case" not in content and "flags" not in response.json()
    assert reviewer.email not in content
    assert "notes" not in response.json() and "decisions" not in response.json()
    history = [entry["action"] for entry in response.json()["history"]]
    assert "access_request.note_added" not in history and "access_request.flagged" not in history
    assert "access_request.assigned" not in history
    assert response.json()["messages"][0]["author_role"] == "reviewer"


def test_someone_elses_request_is_not_found(researcher_api, outsider, llama_catalog):
    theirs = api_apply(bearer_client(outsider))

    response = researcher_api.get(f"/api/v1/access-requests/{theirs['id']}")

    assert_error(response, 404, "not_found")


def test_deleting_a_request_is_not_a_method_of_the_api(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)

    response = researcher_api.delete(f"/api/v1/access-requests/{applied['id']}")

    assert_error(response, 405, "method_not_allowed")
    assert AccessRequest.objects.filter(pk=applied["id"]).exists()


# --- Editing and resubmitting -----------------------------------------------------------


@pytest.fixture
def info_requested(researcher_api, reviewer_api, llama_catalog) -> dict:
    applied = api_apply(researcher_api)
    decide(reviewer_api, applied["id"], "request_info", reason="Name your cluster, please.")
    return applied


def test_patching_changes_only_the_fields_given(researcher_api, info_requested):
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
    assert access_request.full_name == APPLICATION["full_name"]
    assert access_request.country.code == "GB"
    assert access_request.use_case == USE_CASE
    assert access_request.status == RequestStatus.INFO_REQUESTED
    assert new_audit_actions(mark) == ["access_request.edited"]
    assert AuditEvent.objects.get(action="access_request.edited").details["fields"] == ["position", "publications"]


def test_patching_with_bad_input_reports_the_field_and_changes_nothing(researcher_api, info_requested):
    response = researcher_api.patch(
        f"/api/v1/access-requests/{info_requested['id']}", {"use_case": "Too short."}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "use_case" in error["fields"]
    assert AccessRequest.objects.get(pk=info_requested["id"]).use_case == USE_CASE


def test_the_requested_models_cannot_be_patched(researcher_api, info_requested):
    response = researcher_api.patch(
        f"/api/v1/access-requests/{info_requested['id']}", {"variants": ["llama-65b"]}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "withdraw" in error["fields"]["variants"][0]


def test_an_empty_patch_is_refused_and_leaves_no_audit_event(researcher_api, info_requested):
    mark = audit_mark()

    response = researcher_api.patch(f"/api/v1/access-requests/{info_requested['id']}", {}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "at least one field" in error["fields"]["non_field_errors"][0]
    assert new_audit_actions(mark) == []


def test_patching_outside_info_requested_is_a_conflict(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)
    mark = audit_mark()

    response = researcher_api.patch(
        f"/api/v1/access-requests/{applied['id']}", {"position": "Professor"}, format="json"
    )

    error = assert_error(response, 409, "not_editable")
    assert "more information" in error["message"]
    assert AccessRequest.objects.get(pk=applied["id"]).position == APPLICATION["position"]
    assert new_audit_actions(mark) == []


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


def test_resubmitting_a_request_in_the_queue_is_a_conflict(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/resubmit")

    assert_error(response, 409, "not_resubmittable")


def test_resubmit_answers_only_post(researcher_api, info_requested):
    response = researcher_api.get(f"/api/v1/access-requests/{info_requested['id']}/resubmit")

    assert_error(response, 405, "method_not_allowed")


# --- Withdrawing ------------------------------------------------------------------------


def test_withdrawing_closes_the_request(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)
    mark = audit_mark()

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    assert response.json()["queue_position"] is None
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.WITHDRAWN
    assert new_audit_actions(mark) == ["access_request.withdrawn"]


def test_withdrawing_twice_is_a_conflict(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)
    researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")
    mark = audit_mark()

    response = researcher_api.post(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert_error(response, 409, "not_open")
    assert new_audit_actions(mark) == []


def test_withdraw_answers_only_post(researcher_api, llama_catalog):
    applied = api_apply(researcher_api)

    response = researcher_api.get(f"/api/v1/access-requests/{applied['id']}/withdraw")

    assert_error(response, 405, "method_not_allowed")
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.SUBMITTED


# --- Grants and the license ---------------------------------------------------------------


@pytest.fixture
def grant(researcher, reviewer, llama_catalog) -> Grant:
    return grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Collaborator."
    )


def test_grants_list_the_callers_grants_with_the_license_to_accept(researcher_api, outsider, reviewer, grant):
    grant_create(user=outsider, variant=grant.variant, actor=reviewer, reason="Someone else.")

    response = researcher_api.get("/api/v1/grants")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 1
    (listed,) = body["results"]
    assert GRANT_FIELDS <= set(listed)
    assert listed["id"] == grant.pk
    assert listed["variant"] == "llama-7b"
    assert listed["status"] == "license_required"
    assert listed["license_id_required"] == current_license_id()
    assert listed["expires_at"] is None


def test_accepting_the_license_activates_the_grant_and_records_the_acceptance(researcher_api, researcher, grant):
    mark = audit_mark()

    response = researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license",
        {"license_id": current_license_id()},
        format="json",
        HTTP_USER_AGENT="research-script/1.0",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "active"
    acceptance = LicenseAcceptance.objects.get(user=researcher)
    assert acceptance.license_id == current_license_id()
    assert acceptance.user_agent == "research-script/1.0"
    assert new_audit_actions(mark) == ["grant.activated", "license.accepted"]


def test_a_new_license_version_puts_an_active_grant_back_to_license_required(researcher_api, grant, llama_catalog):
    researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )
    old_license_id = current_license_id()
    new_license = license_publish(family=llama_catalog, version="2.0", title="License 2.0", text="New terms.")

    listed = researcher_api.get("/api/v1/grants").json()["results"][0]
    assert listed["status"] == "license_required"
    assert listed["license_id_required"] == new_license.pk

    response = researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": old_license_id}, format="json"
    )
    error = assert_error(response, 400, "invalid")
    assert f"id {new_license.pk}" in error["fields"]["license_id"][0]

    response = researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": new_license.pk}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "active"


def test_accepting_needs_a_license_id(researcher_api, grant):
    response = researcher_api.post(f"/api/v1/grants/{grant.pk}/accept-license", {}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "license_id" in error["fields"]
    assert not LicenseAcceptance.objects.exists()


def test_accepting_the_license_of_a_revoked_grant_is_a_conflict(researcher_api, reviewer, grant):
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    response = researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )

    assert_error(response, 409, "invalid_grant_state")
    assert not LicenseAcceptance.objects.exists()
    listed = researcher_api.get("/api/v1/grants").json()["results"][0]
    assert listed["status"] == "revoked"
    assert listed["status_reason"] == "Shared the weights."


def test_someone_elses_grant_cannot_be_accepted(outsider, grant):
    response = bearer_client(outsider).post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )

    assert_error(response, 404, "not_found")
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


def test_accept_license_answers_only_post(researcher_api, grant):
    response = researcher_api.get(f"/api/v1/grants/{grant.pk}/accept-license")

    assert_error(response, 405, "method_not_allowed")


def test_grants_need_credentials(api_client, db):
    assert_error(api_client.get("/api/v1/grants"), 401)


# --- Schema -------------------------------------------------------------------------------


def test_openapi_schema_documents_every_workflow_endpoint_without_warnings(tmp_path, db):
    path = tmp_path / "schema.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(path))

    schema = json.loads(path.read_text())
    paths = schema["paths"]
    expected = {
        "/api/v1/access-requests": {"get", "post"},
        "/api/v1/access-requests/{id}": {"get", "patch"},
        "/api/v1/access-requests/{id}/resubmit": {"post"},
        "/api/v1/access-requests/{id}/withdraw": {"post"},
        "/api/v1/grants": {"get"},
        "/api/v1/grants/{id}/accept-license": {"post"},
        "/api/v1/review/requests": {"get"},
        "/api/v1/review/requests/{id}": {"get"},
        "/api/v1/review/requests/{id}/claim": {"post"},
        "/api/v1/review/requests/{id}/notes": {"post"},
        "/api/v1/review/requests/{id}/decision": {"post"},
        "/api/v1/review/grants": {"get", "post"},
        "/api/v1/review/grants/{id}/revoke": {"post"},
        "/api/v1/review/grants/{id}/suspend": {"post"},
        "/api/v1/review/grants/{id}/reinstate": {"post"},
    }
    for url, methods in expected.items():
        assert methods <= set(paths[url]), url
    create = paths["/api/v1/access-requests"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("AccessRequestCreateRequest")
    assert "201" in create["responses"]
    decision = paths["/api/v1/review/requests/{id}/decision"]["post"]["responses"]
    assert {"200", "400", "403", "404", "409"} <= set(decision)
    assert decision["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    queue_params = {p["name"] for p in paths["/api/v1/review/requests"]["get"]["parameters"]}
    assert {"status", "variant", "country", "flag", "assignee", "page"} <= queue_params
    listed = schema["components"]["schemas"]["PaginatedReviewRequestListList"]["properties"]
    assert {"count", "next", "previous", "results"} <= set(listed)
