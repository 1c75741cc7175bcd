"""Partial approvals: in a request for a one-reviewer model and a two-reviewer model, the first
is granted as soon as one reviewer approves it, while the second waits (issue 15, item 2); and
what a later reject, request for information or withdrawal does to such a request."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from access.grants.models import Grant
from access.requests.models import MessageKind, RequestStatus
from access.requests.selectors import request_history
from access.requests.services import access_request_edit, access_request_resubmit, access_request_withdraw
from access.review.services import access_request_approve, access_request_reject, access_request_request_info


def _grants(user) -> dict[str, str]:
    return dict(Grant.objects.filter(user=user).values_list("variant__slug", "status"))


@pytest.fixture
def mixed(researcher, llama_catalog, submit):
    """A request for 7B (one reviewer) and 65B (two reviewers)."""
    return submit(researcher, "llama-7b", "llama-65b")


@pytest.fixture
def partly_approved(mixed, reviewer):
    return access_request_approve(access_request=mixed, reviewer=reviewer)


def test_the_first_approval_grants_7b_and_tells_the_applicant_65b_waits(
    researcher, reviewer, mixed, new_audit_actions, audit_event_for, decisions_by_slug, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    with new_audit_actions() as actions, django_capture_on_commit_callbacks(execute=True):
        result = access_request_approve(access_request=mixed, reviewer=reviewer)

    assert result.status == RequestStatus.IN_REVIEW
    assert decisions_by_slug(mixed) == {"llama-7b": "approved", "llama-65b": "pending"}
    assert _grants(researcher) == {"llama-7b": "license_required"}
    assert actions == ["access_request.approval_recorded", "grant.created"]
    details = audit_event_for(mixed, "access_request.approval_recorded").details
    assert details["granted"] == ["llama-7b"] and details["waiting_for_second_approval"] == ["llama-65b"]
    message = mixed.messages.get(kind=MessageKind.DECISION)
    assert message.text == (
        "Approved: LLaMA 7B. Accept the license to start downloading. Still waiting for a second reviewer: "
        "LLaMA 65B; we will write again once they decide."
    )
    (email,) = [m for m in mailoutbox if m.to == [researcher.email]]
    assert email.subject.endswith(f"Partly approved: request {mixed.reference}")
    assert "approved for:\n- LLaMA 7B" in email.body
    assert "Still waiting for a second reviewer (the largest models need two):\n- LLaMA 65B" in email.body
    history = [entry["label"] for entry in request_history(mixed)]
    assert history[-1] == "Some models approved; the others wait for a second reviewer"


def test_the_second_approval_grants_65b_and_approves_the_request(
    researcher, second_reviewer, partly_approved, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = access_request_approve(access_request=partly_approved, reviewer=second_reviewer)

    assert result.status == RequestStatus.APPROVED and result.decided_at is not None
    assert _grants(researcher) == {"llama-7b": "license_required", "llama-65b": "license_required"}
    (email,) = [m for m in mailoutbox if m.to == [researcher.email]]
    assert "approved for:\n- LLaMA 7B\n- LLaMA 65B" in email.body
    assert "waiting" not in email.body.lower()


def test_naming_the_granted_model_again_approves_only_what_waits(
    researcher, second_reviewer, partly_approved, llama, decisions_by_slug
):
    result = access_request_approve(
        access_request=partly_approved, reviewer=second_reviewer, variants=llama("llama-7b", "llama-65b")
    )

    assert result.status == RequestStatus.APPROVED
    assert decisions_by_slug(partly_approved) == {"llama-7b": "approved", "llama-65b": "approved"}
    assert Grant.objects.filter(user=researcher).count() == 2


def test_a_reject_after_a_partial_approval_declines_only_what_waits(
    researcher, second_reviewer, partly_approved, decisions_by_slug, audit_event_for, mailoutbox,
    django_capture_on_commit_callbacks, client, login_with_password,
):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        result = access_request_reject(
            access_request=partly_approved, reviewer=second_reviewer, reason="The 65B model is not needed for this."
        )

    # The request did give access, to 7B: it ends approved, with 65B declined and the reason kept.
    assert result.status == RequestStatus.APPROVED
    assert result.rejection_reason == "The 65B model is not needed for this."
    assert decisions_by_slug(partly_approved) == {"llama-7b": "approved", "llama-65b": "declined"}
    assert _grants(researcher) == {"llama-7b": "license_required"}
    details = audit_event_for(partly_approved, "access_request.rejected").details
    assert details["declined"] == ["llama-65b"] and details["granted_before"] == ["llama-7b"]
    last = partly_approved.messages.filter(kind=MessageKind.DECISION).last()
    assert last.text.startswith("Not approved: LLaMA 65B. The 65B model is not needed for this.")
    assert "Your access to LLaMA 7B stays as it is." in last.text
    (email,) = [m for m in mailoutbox if m.to == [researcher.email]]
    assert "Not approved:\n- LLaMA 65B" in email.body and "Reason: The 65B model is not needed" in email.body
    assert [e["label"] for e in request_history(partly_approved)][-1] == "The models still waiting were not approved"
    login_with_password(client, researcher)
    page = client.get(f"/requests/{partly_approved.pk}/").content.decode()
    assert "The reviewers' reason for what was not approved" in page
    assert "The 65B model is not needed for this." in page


def test_withdrawing_after_a_partial_approval_keeps_what_was_granted(
    researcher, partly_approved, decisions_by_slug, audit_event_for
):
    result = access_request_withdraw(access_request=partly_approved, applicant=researcher)

    assert result.status == RequestStatus.APPROVED
    assert decisions_by_slug(partly_approved) == {"llama-7b": "approved", "llama-65b": "declined"}
    assert _grants(researcher) == {"llama-7b": "license_required"}
    assert audit_event_for(partly_approved, "access_request.withdrawn").details == {"granted_before": ["llama-7b"]}
    assert [e["label"] for e in request_history(partly_approved)][-1] == "You withdrew the models still waiting"


def test_more_information_after_a_partial_approval_starts_a_new_round_for_what_waits(
    researcher, reviewer, second_reviewer, partly_approved, decisions_by_slug
):
    access_request_request_info(access_request=partly_approved, reviewer=second_reviewer, message="Which cluster?")
    access_request_resubmit(access_request=partly_approved, applicant=researcher)

    # 7B stays granted; 65B needs two approvals of the new round.
    assert _grants(researcher) == {"llama-7b": "license_required"}
    result = access_request_approve(access_request=partly_approved, reviewer=second_reviewer)
    assert result.status == RequestStatus.IN_REVIEW
    result = access_request_approve(access_request=partly_approved, reviewer=reviewer)
    assert result.status == RequestStatus.APPROVED
    assert decisions_by_slug(partly_approved) == {"llama-7b": "approved", "llama-65b": "approved"}


def test_an_answer_that_moves_the_applicant_to_an_embargoed_country_goes_to_a_reviewer_not_the_policy(
    researcher, reviewer, second_reviewer, partly_approved, decisions_by_slug, application
):
    # 7B was granted before the question; the policy declining only 65B would leave 7B's access
    # live with nobody looking at the new country.
    access_request_request_info(access_request=partly_approved, reviewer=second_reviewer, message="Where exactly?")
    access_request_edit(access_request=partly_approved, applicant=researcher, data=application(country="IR"))
    result = access_request_resubmit(access_request=partly_approved, applicant=researcher)

    assert result.status in (RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW)
    assert decisions_by_slug(partly_approved) == {"llama-7b": "approved", "llama-65b": "pending"}
    assert result.flags.filter(code="embargoed_country", review_round=result.review_round).exists()


def test_the_request_page_names_the_model_that_waits_for_a_second_reviewer(
    researcher, partly_approved, client, login_with_password
):
    login_with_password(client, researcher)

    page = client.get(f"/requests/{partly_approved.pk}/").content.decode()

    assert 'data-testid="request-status">Partly approved<' in page
    assert "Approved for LLaMA 7B.</strong>" in page
    assert "LLaMA 65B still waits for a second reviewer (the two-person rule for the largest models)" in page
    row = page.split('data-testid="outcome-llama-65b"')[1].split("</tr>")[0]
    assert "Waits for a second reviewer" in row
    row = page.split('data-testid="outcome-llama-7b"')[1].split("</tr>")[0]
    assert "Approved: accept the license" in row


def test_the_apply_form_names_the_models_that_need_two_reviewers_from_the_catalog(
    researcher, llama_catalog, client, login_with_password
):
    ModelVariant.objects.filter(slug="llama-33b").update(approvals_required=2)
    login_with_password(client, researcher)

    page = client.get("/apply/").content.decode()

    note = page.split('data-testid="two-reviewer-note">')[1].split("</p>")[0]
    assert "LLaMA 33B, LLaMA 65B" in note and "need the approval of 2 different reviewers" in note
    assert "LLaMA 7B" not in note
    assert "granted as soon as one reviewer approves them" in note
