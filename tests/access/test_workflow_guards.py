"""Guards found by review: reviewers and their own cases, blocked applicants,
input that must not break emails or the API's error body."""

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.grants.models import GrantStatus
from access.grants.services import grant_create, grant_revoke, grant_suspend
from access.requests.models import AccessRequest, RequestStatus
from access.requests.services import access_request_edit
from access.review.services import access_request_approve, access_request_request_info
from portal.errors import StateConflict
from tests.factories import UserFactory


def test_a_direct_review_permission_also_requires_mfa_for_the_review_pages(client, llama_catalog, login_with_password):
    user = UserFactory(email="direct.perm@lab.example.org")
    user.user_permissions.add(Permission.objects.get(codename="review_access"))
    login_with_password(client, user)

    response = client.get(reverse("review-queue"))

    assert response.status_code == 302
    assert response["Location"] == reverse("mfa-required") + "?next=%2Freview%2F"


def test_a_blocked_applicants_open_request_cannot_be_approved(researcher, reviewer, admin_user, llama_catalog, submit):
    open_request = submit(researcher, "llama-13b")
    grant = grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=admin_user, reason="Pilot."
    )
    grant_revoke(grant=grant, actor=admin_user, reason="Shared the weights.", block_new_requests=True)

    with pytest.raises(StateConflict, match="blocked"):
        access_request_approve(access_request=open_request, reviewer=reviewer)

    open_request.refresh_from_db()
    assert open_request.status == RequestStatus.SUBMITTED
    assert not researcher.grants.filter(status=GrantStatus.LICENSE_REQUIRED).exists()


def test_reviewers_cannot_suspend_or_revoke_their_own_grant(reviewer, admin_user, llama_catalog):
    grant = grant_create(
        user=reviewer, variant=ModelVariant.objects.get(slug="llama-7b"), actor=admin_user, reason="Evaluation."
    )

    with pytest.raises(PermissionDenied):
        grant_suspend(grant=grant, actor=reviewer, reason="Taking a break.")
    with pytest.raises(PermissionDenied):
        grant_revoke(grant=grant, actor=reviewer, reason="Done.")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.LICENSE_REQUIRED


def test_line_breaks_in_names_are_collapsed_so_reviewer_emails_still_go_out(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher, affiliation="University\nof Example\r\nBcc: evil@example.com")

    assert access_request.affiliation == "University of Example Bcc: evil@example.com"
    to_reviewers = [m for m in mailoutbox if reviewer.email in m.bcc]
    assert len(to_reviewers) == 1
    assert "\n" not in to_reviewers[0].subject


def test_a_use_case_over_the_limit_is_a_field_error(researcher, llama_catalog, settings, submit):
    settings.REQUEST_USE_CASE_MAX_CHARS = 500

    with pytest.raises(ValidationError) as error:
        submit(researcher, use_case="word " * 200)

    assert "use_case" in error.value.message_dict
    assert not AccessRequest.objects.exists()


def test_an_api_body_over_the_size_limit_gets_the_json_error_body(researcher, llama_catalog, settings, bearer_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    api = bearer_client(researcher)

    response = api.post("/api/v1/access-requests", {"use_case": "x" * 5000}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"bad_request", "parse_error"}


def test_bulk_decisions_with_an_impossible_id_are_refused_not_crashed(reviewer_client, llama_catalog):
    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": ["100000000000000000000"], "decision": "approve"}
    )

    assert response.status_code in (302, 400)


def test_editing_without_changes_records_nothing(
    researcher, reviewer, llama_catalog, submit, new_audit_actions, application
):
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which lab?")

    with new_audit_actions() as actions:
        access_request_edit(access_request=access_request, applicant=researcher, data=application())

    assert actions == []
    assert AuditEvent.objects.filter(action="access_request.edited").count() == 0
