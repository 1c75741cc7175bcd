"""The grants API (docs/api.md "Grants" and "Review"): the holder's side (``/api/v1/grants``:
their grants with the license to accept, accepting it) and the reviewers' (``/api/v1/review/grants``:
granting without a request, the list and its filters, suspend, reinstate, revoke), with the audit
events each call leaves."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from access.catalog.services import license_publish
from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from access.grants.services import grant_create, grant_revoke

GRANT_FIELDS = {"id", "variant", "status", "license_id_required", "expires_at"}
GRANTS = "/api/v1/review/grants"


@pytest.fixture
def grant(researcher, reviewer, llama_catalog) -> Grant:
    return grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Collaborator."
    )


# --- The holder's grants and the license ----------------------------------------------------------


def test_grants_list_the_callers_grants_with_the_license_to_accept(
    researcher_api, outsider, reviewer, grant, current_license_id
):
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


def test_accepting_the_license_activates_the_grant_and_records_the_acceptance(
    researcher_api, researcher, grant, audit_mark, current_license_id, audit_actions_since
):
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
    assert audit_actions_since(mark) == ["grant.activated", "license.accepted"]


def test_a_new_license_version_puts_an_active_grant_back_to_license_required(
    researcher_api, grant, llama_catalog, current_license_id, assert_error
):
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


def test_accepting_needs_a_license_id(researcher_api, grant, assert_error):
    response = researcher_api.post(f"/api/v1/grants/{grant.pk}/accept-license", {}, format="json")

    error = assert_error(response, 400, "invalid")
    assert "license_id" in error["fields"]
    assert not LicenseAcceptance.objects.exists()


def test_accepting_the_license_of_a_revoked_grant_is_a_conflict(
    researcher_api, reviewer, grant, current_license_id, assert_error
):
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    response = researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )

    assert_error(response, 409, "invalid_grant_state")
    assert not LicenseAcceptance.objects.exists()
    listed = researcher_api.get("/api/v1/grants").json()["results"][0]
    assert listed["status"] == "revoked"
    assert listed["status_reason"] == "Shared the weights."


def test_someone_elses_grant_cannot_be_accepted(outsider, grant, bearer_client, current_license_id, assert_error):
    response = bearer_client(outsider).post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )

    assert_error(response, 404, "not_found")
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


def test_accept_license_answers_only_post(researcher_api, grant, assert_error):
    response = researcher_api.get(f"/api/v1/grants/{grant.pk}/accept-license")

    assert_error(response, 405, "method_not_allowed")


def test_grants_need_credentials(api_client, db, assert_error):
    assert_error(api_client.get("/api/v1/grants"), 401)


# --- Grants managed by reviewers ------------------------------------------------------------------


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content[:500]
    return [row["id"] for row in response.json()["results"]]


def test_granting_without_a_request(reviewer_api, researcher, llama_catalog, audit_mark, audit_actions_since):
    mark = audit_mark()

    response = reviewer_api.post(
        GRANTS, {"email": researcher.email, "variant": "llama-33b", "reason": "Co-author of the paper."}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "license_required"
    assert body["user"] == researcher.email
    assert body["request"] is None
    assert body["granted_by"] == "rita.reviewer@lab.example.org"
    grant = Grant.objects.get(pk=body["id"])
    assert (grant.user, grant.variant.slug, grant.reason) == (researcher, "llama-33b", "Co-author of the paper.")
    assert audit_actions_since(mark) == ["grant.created"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nobody@example.org", "variant": "llama-7b", "reason": "x"}, "email"),
        ({"email": "ada@uni.example.edu", "variant": "llama-1b", "reason": "x"}, "variant"),
        ({"email": "ada@uni.example.edu", "variant": "llama-7b"}, "reason"),
        (
            {"email": "ada@uni.example.edu", "variant": "llama-7b", "reason": "x", "expires_at": "2001-01-01"},
            "expires_at",
        ),
    ],
)
def test_a_bad_grant_is_a_field_error(reviewer_api, researcher, llama_catalog, body, field, assert_error):
    error = assert_error(reviewer_api.post(GRANTS, body, format="json"), 400, "invalid")

    assert field in error["fields"], error
    assert not Grant.objects.exists()


def test_a_second_live_grant_for_the_same_model_is_a_conflict(reviewer_api, researcher, llama_catalog, assert_error):
    body = {"email": researcher.email, "variant": "llama-7b", "reason": "Collaborator."}
    reviewer_api.post(GRANTS, body, format="json")

    assert_error(reviewer_api.post(GRANTS, body, format="json"), 409, "grant_exists")
    assert Grant.objects.count() == 1


def test_the_grant_list_filters_by_user_variant_and_status(reviewer_api, researcher, outsider, reviewer, llama_catalog):
    seven = ModelVariant.objects.get(slug="llama-7b")
    mine = grant_create(user=researcher, variant=seven, actor=reviewer, reason="Collaborator.")
    theirs = grant_create(user=outsider, variant=seven, actor=reviewer, reason="Collaborator.")

    assert _ids(reviewer_api.get(GRANTS)) == [theirs.pk, mine.pk]
    assert _ids(reviewer_api.get(GRANTS, {"user": researcher.email})) == [mine.pk]
    assert _ids(reviewer_api.get(GRANTS, {"variant": "llama-13b"})) == []
    assert _ids(reviewer_api.get(GRANTS, {"status": "license_required"})) == [theirs.pk, mine.pk]


def test_the_user_filter_finds_a_whole_address_exactly_and_part_of_one_as_a_substring(
    reviewer_api, grants_by_holder, email_filter_case
):
    query, holders = email_filter_case

    assert set(_ids(reviewer_api.get(GRANTS, {"user": query}))) == {grants_by_holder[e] for e in holders}, query


def test_suspending_and_reinstating_a_grant(researcher_api, reviewer_api, grant, audit_mark, audit_actions_since):
    mark = audit_mark()
    response = reviewer_api.post(f"{GRANTS}/{grant.pk}/suspend", {"reason": "Unusual downloads."}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    assert response.json()["status_reason"] == "Unusual downloads."
    assert researcher_api.get("/api/v1/grants").json()["results"][0]["status"] == "suspended"
    assert audit_actions_since(mark) == ["grant.suspended"]

    mark = audit_mark()
    response = reviewer_api.post(f"{GRANTS}/{grant.pk}/reinstate")

    assert response.status_code == 200
    assert response.json()["status"] == "license_required"  # the license was never accepted
    assert audit_actions_since(mark) == ["grant.reinstated"]


def test_reinstating_a_grant_whose_license_was_accepted_makes_it_active(
    researcher_api, reviewer_api, grant, current_license_id
):
    researcher_api.post(
        f"/api/v1/grants/{grant.pk}/accept-license", {"license_id": current_license_id()}, format="json"
    )
    reviewer_api.post(f"{GRANTS}/{grant.pk}/suspend", {"reason": "Check."}, format="json")

    response = reviewer_api.post(f"{GRANTS}/{grant.pk}/reinstate", {"reason": "Checked."}, format="json")

    assert response.json()["status"] == "active"


def test_revoking_with_a_block_stops_new_requests(
    researcher_api,
    reviewer_api,
    researcher,
    grant,
    audit_mark,
    audit_actions_since,
    api_application,
    current_license_id,
    assert_error,
):
    mark = audit_mark()

    response = reviewer_api.post(
        f"{GRANTS}/{grant.pk}/revoke", {"reason": "Shared the weights.", "block_new_requests": True}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["blocks_new_requests"] is True
    assert audit_actions_since(mark) == ["grant.revoked"]
    refused = researcher_api.post(
        "/api/v1/access-requests",
        {**api_application, "variants": ["llama-13b"], "license_id": current_license_id()},
        format="json",
    )
    assert "revoked" in assert_error(refused, 400, "invalid")["fields"]["variants"][0]


def test_revoking_twice_is_a_conflict(reviewer_api, grant, assert_error):
    reviewer_api.post(f"{GRANTS}/{grant.pk}/revoke", {"reason": "Shared the weights."}, format="json")

    response = reviewer_api.post(f"{GRANTS}/{grant.pk}/revoke", {"reason": "Again."}, format="json")

    assert_error(response, 409, "invalid_grant_state")


def test_reinstating_a_grant_that_is_not_suspended_is_a_conflict(reviewer_api, grant, assert_error):
    assert_error(reviewer_api.post(f"{GRANTS}/{grant.pk}/reinstate"), 409, "invalid_grant_state")


@pytest.mark.parametrize("action", ["revoke", "suspend"])
def test_revoking_and_suspending_need_a_reason(reviewer_api, grant, action, assert_error):
    error = assert_error(reviewer_api.post(f"{GRANTS}/{grant.pk}/{action}", {}, format="json"), 400, "invalid")

    assert "reason" in error["fields"]
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.LICENSE_REQUIRED


@pytest.mark.parametrize("action", ["revoke", "suspend", "reinstate"])
def test_grant_actions_answer_only_post(reviewer_api, grant, action, assert_error):
    assert_error(reviewer_api.get(f"{GRANTS}/{grant.pk}/{action}"), 405, "method_not_allowed")


def test_grant_actions_on_a_missing_grant_are_not_found(reviewer_api, db, assert_error):
    assert_error(reviewer_api.post(f"{GRANTS}/999999/suspend", {"reason": "x"}, format="json"), 404, "not_found")


@pytest.mark.parametrize("action", ["revoke", "suspend", "reinstate"])
@pytest.mark.parametrize("body", [{}, {"reason": "Looks fine to me."}])
def test_a_reviewer_acting_on_their_own_grant_is_refused_before_anything_else(
    reviewer_api, second_reviewer, reviewer, llama_catalog, action, body, assert_error
):
    own = grant_create(
        user=reviewer, variant=ModelVariant.objects.get(slug="llama-7b"), actor=second_reviewer, reason="Audit."
    )
    response = reviewer_api.post(f"{GRANTS}/{own.pk}/{action}", body, format="json")

    error = assert_error(response, 403, "permission_denied")

    assert "your own access" in error["message"]
    assert Grant.objects.get(pk=own.pk).status == GrantStatus.LICENSE_REQUIRED
