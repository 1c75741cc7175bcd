"""The applicant's lookups: one request if the user may see it, and its audit events."""

from __future__ import annotations

import pytest
from django.http import Http404

from access.grants.services import grant_revoke
from access.requests.selectors import access_request_get_for_applicant, request_audit_events, request_history
from access.review.services import access_request_approve


def test_the_applicant_gets_their_own_request(researcher, llama_catalog, submit):
    access_request = submit(researcher)

    assert access_request_get_for_applicant(researcher, access_request.pk) == access_request


def test_another_users_request_is_as_absent_as_a_missing_one(researcher, outsider, llama_catalog, submit):
    access_request = submit(researcher)

    with pytest.raises(Http404) as someone_elses:
        access_request_get_for_applicant(outsider, access_request.pk, missing="You have no such request.")
    with pytest.raises(Http404) as missing:
        access_request_get_for_applicant(outsider, 999_999, missing="You have no such request.")

    assert str(someone_elses.value) == str(missing.value) == "You have no such request."


def test_reviewers_read_the_events_of_the_grants_a_request_led_to_and_applicants_only_its_milestones(
    researcher, reviewer, llama_catalog, submit
):
    access_request = submit(researcher)
    access_request_approve(access_request=access_request, reviewer=reviewer)
    grant = access_request.grants.get()
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    request_only = [event.action for event in request_audit_events(access_request)]
    with_grants = [event.action for event in request_audit_events(access_request, with_grants=True)]

    assert "access_request.approved" in request_only and "grant.revoked" not in request_only
    assert set(request_only) < set(with_grants) and {"grant.created", "grant.revoked"} <= set(with_grants)
    milestones = [entry["action"] for entry in request_history(access_request)]
    assert milestones == ["access_request.submitted", "access_request.approved"]
