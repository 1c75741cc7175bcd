"""The reviewers' API (docs/api.md "Review"): the queue with its filters, a request's
full file, claim, notes, decisions with the two-person rule, the audit trail each
call leaves, and the queue's query count at scale. Grants managed by reviewers
through the API are tested in tests/access/grants/test_api.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.models import Grant, GrantStatus
from access.requests.models import (
    AccessRequest,
    RequestedVariant,
    RequestStatus,
    ScreeningFlag,
    ScreeningFlagCode,
    VariantDecision,
)
from access.review.models import DecisionKind, ReviewDecision, ReviewNote
from portal import roles
from tests.factories import UserFactory

QUEUE = "/api/v1/review/requests"


@pytest.fixture
def applied(researcher_api, llama_catalog, api_apply) -> dict:
    return api_apply(researcher_api)


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content[:500]
    return [row["id"] for row in response.json()["results"]]


# --- The two-person rule and one's own request ------------------------------------------


def test_a_65b_request_stays_in_review_after_one_approval_and_is_approved_after_a_second(
    researcher_api, reviewer_api, second_reviewer_api, researcher, llama_catalog, api_apply, decide, assert_error
):
    applied = api_apply(researcher_api, ["llama-65b"])
    assert researcher_api.get(QUEUE).status_code == 403
    assert reviewer_api.get(QUEUE).json()["results"][0]["approvals_needed"] == 2

    response = decide(reviewer_api, applied["id"], "approve")

    assert response.status_code == 200
    assert response.json()["status"] == "in_review"
    assert response.json()["approvals_needed"] == 1
    assert reviewer_api.get(QUEUE).json()["results"][0]["approvals_needed"] == 1
    assert not Grant.objects.exists()

    again = decide(reviewer_api, applied["id"], "approve")
    assert_error(again, 409, "already_approved_by_you")

    response = decide(second_reviewer_api, applied["id"], "approve")

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["approvals_needed"] == 0
    assert [(g.user, g.variant.slug, g.status) for g in Grant.objects.all()] == [
        (researcher, "llama-65b", GrantStatus.LICENSE_REQUIRED)
    ]
    reviewers = {d["reviewer"] for d in response.json()["decisions"]}
    assert reviewers == {"rita.reviewer@lab.example.org", "sam.second@lab.example.org"}


def test_a_reviewer_cannot_approve_their_own_request(
    reviewer_api, reviewer, llama_catalog, api_apply, audit_mark, decide, assert_error, audit_actions_since
):
    own = api_apply(reviewer_api, ["llama-7b"])
    mark = audit_mark()

    response = decide(reviewer_api, own["id"], "approve")

    assert "own request" in assert_error(response, 403, "permission_denied")["message"]
    assert AccessRequest.objects.get(pk=own["id"]).status == RequestStatus.SUBMITTED
    assert not ReviewDecision.objects.exists()
    assert not Grant.objects.exists()
    assert audit_actions_since(mark) == []


def test_a_reviewer_does_not_see_their_own_request_in_the_review_api(
    reviewer_api, second_reviewer_api, reviewer, llama_catalog, api_apply, assert_error
):
    own = api_apply(reviewer_api, ["llama-7b"])

    assert own["id"] not in _ids(reviewer_api.get(QUEUE))
    assert_error(reviewer_api.get(f"{QUEUE}/{own['id']}"), 403, "permission_denied")
    assert_error(reviewer_api.post(f"{QUEUE}/{own['id']}/claim"), 403)
    assert_error(reviewer_api.post(f"{QUEUE}/{own['id']}/notes", {"text": "Looks fine."}, format="json"), 403)
    assert own["id"] in _ids(second_reviewer_api.get(QUEUE))
    assert not ReviewNote.objects.exists()


def test_a_reviewer_cannot_grant_or_reinstate_their_own_access(
    reviewer_api, second_reviewer_api, reviewer, llama_catalog, assert_error
):
    response = reviewer_api.post(
        "/api/v1/review/grants", {"email": reviewer.email, "variant": "llama-7b", "reason": "Me."}, format="json"
    )
    assert_error(response, 403, "permission_denied")
    assert not Grant.objects.exists()

    second = second_reviewer_api.post(
        "/api/v1/review/grants",
        {"email": reviewer.email, "variant": "llama-7b", "reason": "Audit work."},
        format="json",
    ).json()
    second_reviewer_api.post(f"/api/v1/review/grants/{second['id']}/suspend", {"reason": "Check."}, format="json")

    response = reviewer_api.post(f"/api/v1/review/grants/{second['id']}/reinstate")

    assert_error(response, 403, "permission_denied")
    assert Grant.objects.get(pk=second["id"]).status == GrantStatus.SUSPENDED


# --- Who gets in ------------------------------------------------------------------------


def test_a_reviewer_session_without_mfa_is_refused_while_their_token_works(
    client, reviewer_without_mfa, applied, login_with_password, assert_error, bearer_client
):
    login_with_password(client, reviewer_without_mfa)

    response = client.get(QUEUE)

    assert "two-factor" in assert_error(response, 403, "permission_denied")["message"]
    assert _ids(bearer_client(reviewer_without_mfa).get(QUEUE)) == [applied["id"]]


def test_a_reviewer_session_verified_with_totp_gets_in(reviewer_client, applied):
    assert _ids(reviewer_client.get(QUEUE)) == [applied["id"]]


def test_an_admin_is_a_reviewer_too(admin_user, applied, bearer_client):
    assert _ids(bearer_client(admin_user).get(QUEUE)) == [applied["id"]]


def test_a_researcher_gets_403_on_the_review_api(researcher_api, applied, assert_error):
    assert_error(researcher_api.get(QUEUE), 403, "permission_denied")
    assert_error(researcher_api.get(f"{QUEUE}/{applied['id']}"), 403)
    assert_error(researcher_api.post("/api/v1/review/grants", {}, format="json"), 403)


def test_the_review_api_needs_credentials(api_client, applied, assert_error):
    assert_error(api_client.get(QUEUE), 401)
    assert_error(api_client.post(f"{QUEUE}/{applied['id']}/decision", {"decision": "approve"}, format="json"), 401)


# --- The queue --------------------------------------------------------------------------


def test_the_queue_lists_open_requests_oldest_first_with_flags(
    reviewer_api, llama_catalog, api_apply, bearer_client, use_case_text
):
    flagged_user = UserFactory(email="someone@gmail.com")
    first = api_apply(bearer_client(flagged_user), ["llama-7b"], use_case=use_case_text[:200])
    second = api_apply(bearer_client(UserFactory()), ["llama-13b", "llama-33b"])
    withdrawn = api_apply(bearer_client(UserFactory()), ["llama-7b"])
    AccessRequest.objects.filter(pk=withdrawn["id"]).update(status=RequestStatus.WITHDRAWN)

    body = reviewer_api.get(QUEUE).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert [row["id"] for row in body["results"]] == [first["id"], second["id"]]
    row = body["results"][0]
    assert row["applicant"] == "someone@gmail.com"
    # 200 characters pass the form's minimum, so they are not flagged short.
    assert {flag["code"] for flag in row["flags"]} == {"free_mail_domain"}
    assert all(flag["reason"] for flag in row["flags"])
    assert row["approvals_needed"] == 1
    assert row["assignee"] is None
    assert body["results"][1]["variants"] == ["llama-13b", "llama-33b"]


@pytest.fixture
def queue(
    researcher_api, reviewer, reviewer_api, second_reviewer, llama_catalog, api_apply, bearer_client, decide
) -> dict:
    """Four requests: 7B from GB (claimed by the reviewer), 65B from DE (claimed by
    the second reviewer), 13B from a free-mail address in FR, 7B being asked for more."""
    gb = api_apply(researcher_api, ["llama-7b"])
    reviewer_api.post(f"{QUEUE}/{gb['id']}/claim")
    de = api_apply(bearer_client(UserFactory()), ["llama-65b"], country="DE")
    reviewer_api.post(f"{QUEUE}/{de['id']}/claim", {"assignee": second_reviewer.email}, format="json")
    fr = api_apply(bearer_client(UserFactory(email="fr@gmail.com")), ["llama-13b"], country="FR")
    asked = api_apply(bearer_client(UserFactory()), ["llama-7b"])
    decide(reviewer_api, asked["id"], "request_info", reason="Which cluster?")
    return {"gb": gb["id"], "de": de["id"], "fr": fr["id"], "asked": asked["id"]}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["gb", "de", "fr"]),
        ({"status": "info_requested"}, ["asked"]),
        ({"status": "in_review"}, ["gb", "de"]),
        ({"variant": "llama-7b"}, ["gb"]),
        ({"variant": "llama-65b"}, ["de"]),
        ({"country": "de"}, ["de"]),
        ({"flag": "free_mail_domain"}, ["fr"]),
        ({"assignee": "me"}, ["gb"]),
        ({"assignee": "none"}, ["fr"]),
        ({"assignee": "sam.second@lab.example.org"}, ["de"]),
        ({"organization_type": "academic", "country": "GB"}, ["gb"]),
        ({"status": "", "variant": "", "country": "", "flag": "", "assignee": ""}, ["gb", "de", "fr"]),
    ],
)
def test_the_queue_filters(reviewer_api, queue, params, expected):
    assert _ids(reviewer_api.get(QUEUE, params)) == [queue[name] for name in expected]


@pytest.mark.parametrize("param", ["status", "flag", "organization_type"])
def test_an_unknown_filter_value_is_a_field_error(reviewer_api, db, param, assert_error):
    error = assert_error(reviewer_api.get(QUEUE, {param: "bogus"}), 400, "invalid")

    assert param in error["fields"]


def test_the_queue_answers_only_get(reviewer_api, db, assert_error):
    assert_error(reviewer_api.post(QUEUE, {}, format="json"), 405, "method_not_allowed")


def _bulk_requests(count: int, *, applicant, license_version, variants, use_case: str, start: int = 0) -> None:
    """``count`` submitted requests with a variant, a flag on every other one and a
    first approval on every third, written in bulk."""
    now = timezone.now()
    requests = AccessRequest.objects.bulk_create(
        [
            AccessRequest(
                reference=f"BULK{start + n:06d}",  # the random default could collide across 10,000 rows
                applicant=applicant,
                full_name=f"Applicant {n}",
                affiliation="University of Example",
                organization_type="academic",
                position="Researcher",
                country="DE",
                use_case=use_case,
                license=license_version,
                submitted_at=now - dt.timedelta(seconds=count - n),
            )
            for n in range(count)
        ],
        batch_size=1000,
    )
    RequestedVariant.objects.bulk_create(
        [RequestedVariant(request=r, variant=variants[n % len(variants)]) for n, r in enumerate(requests)],
        batch_size=1000,
    )
    ScreeningFlag.objects.bulk_create(
        [ScreeningFlag(request=r, code=ScreeningFlagCode.SHORT_USE_CASE, reason="Short.") for r in requests[::2]],
        batch_size=1000,
    )
    reviewer = UserFactory(role=roles.REVIEWER)
    decisions = ReviewDecision.objects.bulk_create(
        [
            ReviewDecision(request=r, reviewer=reviewer, kind=DecisionKind.APPROVE, review_round=1)
            for r in requests[::3]
        ],
        batch_size=1000,
    )
    Through = ReviewDecision.variants.through
    variant_of = dict(RequestedVariant.objects.values_list("request_id", "variant_id"))
    Through.objects.bulk_create(
        [Through(reviewdecision_id=d.pk, modelvariant_id=variant_of[d.request_id]) for d in decisions],
        batch_size=1000,
        ignore_conflicts=True,
    )


def _queue_queries(api) -> tuple[int, dict]:
    api.get(QUEUE)  # warm up: the token's once-a-minute "last used" write
    with CaptureQueriesContext(connection) as queries:
        response = api.get(QUEUE)
    assert response.status_code == 200
    return len(queries), response.json()


def test_the_queue_runs_the_same_number_of_queries_with_10000_requests_as_with_10(
    reviewer_api, llama_catalog, use_case_text
):
    applicant = UserFactory()
    license_version = license_current(llama_catalog)
    variants = list(ModelVariant.objects.filter(slug__in=["llama-7b", "llama-65b"]))
    _bulk_requests(10, applicant=applicant, license_version=license_version, variants=variants, use_case=use_case_text)
    few_queries, few = _queue_queries(reviewer_api)
    assert few["count"] == 10

    _bulk_requests(
        9_990,
        applicant=applicant,
        license_version=license_version,
        variants=variants,
        use_case=use_case_text,
        start=10,
    )
    many_queries, many = _queue_queries(reviewer_api)

    assert many["count"] == 10_000
    assert len(many["results"]) == 50
    assert many_queries == few_queries
    needed = {row["variants"][0]: set() for row in many["results"]}
    for row in many["results"]:
        needed[row["variants"][0]].add(row["approvals_needed"])
    assert needed == {"llama-7b": {0, 1}, "llama-65b": {1, 2}}


# --- A request's file, claim and notes ----------------------------------------------------


def test_the_detail_has_the_full_application_flags_notes_messages_and_decisions(
    researcher_api,
    reviewer_api,
    second_reviewer_api,
    llama_catalog,
    api_apply,
    bearer_client,
    decide,
    api_application,
    use_case_text,
    current_license_id,
):
    flagged = UserFactory(email="ada@gmail.com")
    applied = api_apply(bearer_client(flagged), ["llama-65b", "llama-7b"])
    second_reviewer_api.post(f"{QUEUE}/{applied['id']}/notes", {"text": "Lab page lists her."}, format="json")
    decide(reviewer_api, applied["id"], "approve", variants=["llama-7b"])

    response = reviewer_api.get(f"{QUEUE}/{applied['id']}")

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in api_application if key != "use_case"} == {
        key: value for key, value in api_application.items() if key != "use_case"
    }
    assert body["use_case"] == use_case_text
    assert body["license"]["id"] == current_license_id()
    assert [flag["code"] for flag in body["flags"]] == ["free_mail_domain"]
    assert [(n["author"], n["text"]) for n in body["notes"]] == [("sam.second@lab.example.org", "Lab page lists her.")]
    assert [(d["kind"], d["variants"]) for d in body["decisions"]] == [("approve", ["llama-7b"])]
    assert body["status"] == "approved"
    assert body["variant_decisions"] == [
        {"variant": "llama-7b", "decision": "approved"},
        {"variant": "llama-65b", "decision": "declined"},
    ]
    assert [(g["variant"], g["status"]) for g in body["applicant_grants"]] == [("llama-7b", "license_required")]
    assert body["messages"][-1]["author"] == "rita.reviewer@lab.example.org"
    assert [entry["action"] for entry in body["history"]] == ["access_request.submitted", "access_request.approved"]


def test_the_detail_of_a_missing_request_is_not_found(reviewer_api, db, assert_error):
    assert_error(reviewer_api.get(f"{QUEUE}/999999"), 404, "not_found")


def test_the_detail_lists_the_applicants_other_requests(researcher_api, reviewer_api, applied, api_apply):
    other = api_apply(researcher_api, ["llama-13b"])

    body = reviewer_api.get(f"{QUEUE}/{applied['id']}").json()

    assert [r["reference"] for r in body["applicant_other_requests"]] == [other["reference"]]


def test_claiming_takes_the_request_into_review(reviewer_api, applied, audit_mark, audit_actions_since):
    mark = audit_mark()

    response = reviewer_api.post(f"{QUEUE}/{applied['id']}/claim")

    assert response.status_code == 200
    assert response.json()["status"] == "in_review"
    assert response.json()["assignee"] == "rita.reviewer@lab.example.org"
    assert audit_actions_since(mark) == ["access_request.assigned"]


def test_claiming_can_hand_the_request_to_another_reviewer(reviewer_api, second_reviewer, applied):
    response = reviewer_api.post(f"{QUEUE}/{applied['id']}/claim", {"assignee": second_reviewer.email}, format="json")

    assert response.status_code == 200
    assert AccessRequest.objects.get(pk=applied["id"]).assignee == second_reviewer


@pytest.mark.parametrize(
    ("assignee", "words"), [("nobody@example.org", "No account"), ("eve@elsewhere.example.com", "not a reviewer")]
)
def test_claiming_for_someone_who_cannot_review_is_a_field_error(
    reviewer_api, outsider, applied, assignee, words, assert_error
):
    response = reviewer_api.post(f"{QUEUE}/{applied['id']}/claim", {"assignee": assignee}, format="json")

    error = assert_error(response, 400, "invalid")
    assert words in error["fields"]["assignee"][0]
    assert AccessRequest.objects.get(pk=applied["id"]).assignee is None


def test_claiming_a_decided_request_is_a_conflict(reviewer_api, applied, decide, assert_error):
    decide(reviewer_api, applied["id"], "approve")

    assert_error(reviewer_api.post(f"{QUEUE}/{applied['id']}/claim"), 409, "already_decided")


def test_claim_answers_only_post(reviewer_api, applied, assert_error):
    assert_error(reviewer_api.get(f"{QUEUE}/{applied['id']}/claim"), 405, "method_not_allowed")


def test_notes_are_stored_for_reviewers_and_never_shown_to_the_applicant(
    researcher_api, reviewer_api, applied, audit_mark, audit_actions_since
):
    mark = audit_mark()

    response = reviewer_api.post(f"{QUEUE}/{applied['id']}/notes", {"text": "Known lab; NOTE-7731."}, format="json")

    assert response.status_code == 201
    assert response.json()["author"] == "rita.reviewer@lab.example.org"
    assert ReviewNote.objects.get().text == "Known lab; NOTE-7731."
    assert audit_actions_since(mark) == ["access_request.note_added"]
    assert "NOTE-7731" not in researcher_api.get(f"/api/v1/access-requests/{applied['id']}").content.decode()
    assert "NOTE-7731" not in researcher_api.get("/api/v1/access-requests").content.decode()


def test_an_empty_note_is_a_field_error(reviewer_api, applied, assert_error):
    error = assert_error(reviewer_api.post(f"{QUEUE}/{applied['id']}/notes", {"text": " "}, format="json"), 400)

    assert "text" in error["fields"]
    assert not ReviewNote.objects.exists()


def test_notes_answer_only_post(reviewer_api, applied, assert_error):
    assert_error(reviewer_api.get(f"{QUEUE}/{applied['id']}/notes"), 405, "method_not_allowed")


# --- Decisions ----------------------------------------------------------------------------


def test_rejecting_needs_a_reason(reviewer_api, applied, assert_error, decide):
    error = assert_error(decide(reviewer_api, applied["id"], "reject"), 400, "invalid")

    assert "reason" in error["fields"]
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.SUBMITTED


def test_asking_for_more_information_needs_a_message(reviewer_api, applied, assert_error, decide):
    error = assert_error(decide(reviewer_api, applied["id"], "request_info", reason=""), 400, "invalid")

    assert "reason" in error["fields"]


def test_rejecting_shows_the_reason_to_the_applicant(researcher_api, reviewer_api, applied, decide):
    response = decide(reviewer_api, applied["id"], "reject", reason="Commercial use is outside the license.")

    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    mine = researcher_api.get(f"/api/v1/access-requests/{applied['id']}").json()
    assert mine["rejection_reason"] == "Commercial use is outside the license."


def test_approving_a_subset_with_an_end_date_declines_the_rest(
    researcher_api, reviewer_api, researcher, llama_catalog, api_apply, decide
):
    applied = api_apply(researcher_api, ["llama-7b", "llama-13b"])
    ends = (timezone.now() + dt.timedelta(days=90)).replace(microsecond=0)

    response = decide(reviewer_api, applied["id"], "approve", variants=["llama-13b"], expires_at=ends.isoformat())

    assert response.status_code == 200
    grant = Grant.objects.get(user=researcher)
    assert grant.variant.slug == "llama-13b"
    assert grant.expires_at == ends
    decisions = dict(RequestedVariant.objects.filter(request_id=applied["id"]).values_list("variant__slug", "decision"))
    assert decisions == {"llama-7b": VariantDecision.DECLINED, "llama-13b": VariantDecision.APPROVED}
    listed = researcher_api.get("/api/v1/grants").json()["results"]
    assert [(g["variant"], g["expires_at"] is not None) for g in listed] == [("llama-13b", True)]


def test_an_end_date_alone_ends_the_grant_when_that_day_ends(
    researcher_api, reviewer_api, researcher, llama_catalog, api_apply, decide
):
    applied = api_apply(researcher_api, ["llama-7b"])
    day = timezone.localdate() + dt.timedelta(days=30)

    response = decide(reviewer_api, applied["id"], "approve", expires_at=day.isoformat())

    assert response.status_code == 200
    # As "Access ends on" on the review page: the whole of that day, in the site's time zone.
    ends = Grant.objects.get(user=researcher).expires_at
    assert timezone.localtime(ends) == dt.datetime.combine(
        day + dt.timedelta(days=1), dt.time.min, tzinfo=timezone.get_current_timezone()
    )


def test_a_malformed_end_date_says_which_formats_work(reviewer_api, applied, assert_error):
    body = {"decision": "approve", "expires_at": "2027-13-45"}
    error = assert_error(reviewer_api.post(f"{QUEUE}/{applied['id']}/decision", body, format="json"), 400, "invalid")
    assert "Use a date (YYYY-MM-DD) or an ISO 8601 date-time." in str(error["fields"]["expires_at"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "approve", "variants": ["llama-65b"]}, "variants"),
        ({"decision": "approve", "variants": ["llama-9000b"]}, "variants"),
        ({"decision": "approve", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"decision": "approve", "expires_at": "next tuesday"}, "expires_at"),
        ({"decision": "reject", "reason": "No.", "variants": ["llama-7b"]}, "variants"),
        ({"decision": "maybe"}, "decision"),
        ({}, "decision"),
    ],
)
def test_a_bad_decision_is_a_field_error_and_changes_nothing(
    reviewer_api, applied, body, field, audit_mark, assert_error, audit_actions_since
):
    mark = audit_mark()

    response = reviewer_api.post(f"{QUEUE}/{applied['id']}/decision", body, format="json")

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.SUBMITTED
    assert audit_actions_since(mark) == []


def test_deciding_a_decided_request_is_a_conflict(reviewer_api, second_reviewer_api, applied, decide, assert_error):
    decide(reviewer_api, applied["id"], "approve")

    response = decide(second_reviewer_api, applied["id"], "reject", reason="Too late.")

    assert_error(response, 409, "already_decided")
    assert AccessRequest.objects.get(pk=applied["id"]).status == RequestStatus.APPROVED


def test_decision_answers_only_post(reviewer_api, applied, assert_error):
    assert_error(reviewer_api.get(f"{QUEUE}/{applied['id']}/decision"), 405, "method_not_allowed")
