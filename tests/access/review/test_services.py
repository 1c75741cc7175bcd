"""The reviewers' side of the workflow, through its services: claim and assign,
notes, request more information, approve (all or some variants, the two-person
rule), reject with a reason, bulk decisions, and the rejection templates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.grants.models import Grant
from access.requests.models import AccessRequest, MessageKind, RequestStatus
from access.requests.services import access_request_edit, access_request_resubmit, access_request_withdraw
from access.review.models import DecisionKind, RejectionTemplate, ReviewNote
from access.review.seed import REJECTION_TEMPLATES, rejection_templates_seed
from access.review.selectors import approvals_needed
from access.review.services import (
    access_request_approve,
    access_request_claim,
    access_request_decide,
    access_request_note_add,
    access_request_reject,
    access_request_request_info,
    access_requests_bulk_decide,
    reviewer_can_review,
)
from access.seed import llama_release_seed
from portal.errors import StateConflict


def _reload(access_request) -> AccessRequest:
    return AccessRequest.objects.get(pk=access_request.pk)


def _grants(user) -> dict[str, str]:
    return dict(Grant.objects.filter(user=user).values_list("variant__slug", "status"))


# --- Who reviews ----------------------------------------------------------------------------------


def test_reviewers_and_admins_can_review_and_researchers_cannot(reviewer, admin_user, researcher):
    assert reviewer_can_review(reviewer)
    assert reviewer_can_review(admin_user)
    assert not reviewer_can_review(researcher)


def test_a_researcher_cannot_claim_note_or_decide(researcher, outsider, llama_catalog, submit):
    access_request = submit(outsider, full_name="Eve Example")

    for call in (
        lambda: access_request_claim(access_request=access_request, reviewer=researcher),
        lambda: access_request_note_add(access_request=access_request, author=researcher, text="Looks fine."),
        lambda: access_request_approve(access_request=access_request, reviewer=researcher),
        lambda: access_request_reject(access_request=access_request, reviewer=researcher, reason="No."),
        lambda: access_request_request_info(access_request=access_request, reviewer=researcher, message="Why?"),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert _reload(access_request).status == RequestStatus.SUBMITTED


# --- Claim and assign -----------------------------------------------------------------------------


def test_claiming_moves_a_submitted_request_into_review_with_one_audit_event(
    reviewer, pending, new_audit_actions, web_request, audit_event_for
):
    with new_audit_actions() as actions:
        claimed = access_request_claim(access_request=pending, reviewer=reviewer, request=web_request())

    assert (claimed.status, claimed.assignee) == (RequestStatus.IN_REVIEW, reviewer)
    assert (_reload(pending).status, _reload(pending).assignee) == (RequestStatus.IN_REVIEW, reviewer)
    assert actions == ["access_request.assigned"]
    event = audit_event_for(pending, "access_request.assigned")
    assert event.actor == reviewer
    assert event.details == {"assignee": reviewer.email, "previous": None}


def test_a_reviewer_can_hand_a_request_to_another_reviewer(reviewer, second_reviewer, pending, new_audit_actions):
    access_request_claim(access_request=pending, reviewer=reviewer)

    with new_audit_actions() as actions:
        access_request_claim(access_request=pending, reviewer=reviewer, assignee=second_reviewer)

    assert _reload(pending).assignee == second_reviewer
    assert _reload(pending).status == RequestStatus.IN_REVIEW
    assert actions == ["access_request.assigned"]
    latest = AuditEvent.objects.filter(action="access_request.assigned").order_by("-id").first()
    assert latest.details == {"assignee": second_reviewer.email, "previous": reviewer.email}


def test_a_request_cannot_be_assigned_to_a_researcher(reviewer, outsider, pending):
    with pytest.raises(ValidationError) as excinfo:
        access_request_claim(access_request=pending, reviewer=reviewer, assignee=outsider)

    assert "is not a reviewer" in excinfo.value.message_dict["assignee"][0]
    assert _reload(pending).assignee is None


def test_a_request_cannot_be_assigned_to_its_own_applicant(reviewer, second_reviewer, llama_catalog, submit):
    own = submit(reviewer, full_name="Rita Reviewer", affiliation="Lab")

    with pytest.raises(ValidationError) as excinfo:
        access_request_claim(access_request=own, reviewer=second_reviewer, assignee=reviewer)

    assert "cannot review their own request" in excinfo.value.message_dict["assignee"][0]


def test_claiming_a_request_waiting_for_the_applicant_keeps_its_status(reviewer, second_reviewer, pending):
    access_request_request_info(access_request=pending, reviewer=reviewer, message="Which cluster?")

    access_request_claim(access_request=pending, reviewer=second_reviewer)

    assert (_reload(pending).status, _reload(pending).assignee) == (RequestStatus.INFO_REQUESTED, second_reviewer)


def test_a_decided_request_cannot_be_claimed(researcher, reviewer, pending, new_audit_actions):
    access_request_withdraw(access_request=pending, applicant=researcher)

    with new_audit_actions() as actions, pytest.raises(StateConflict) as excinfo:
        access_request_claim(access_request=pending, reviewer=reviewer)

    assert excinfo.value.code == "already_decided"
    assert actions == []


# --- Notes ----------------------------------------------------------------------------------------


def test_a_note_is_stored_and_its_text_kept_out_of_the_audit_log(reviewer, pending, new_audit_actions, audit_event_for):
    with new_audit_actions() as actions:
        note = access_request_note_add(access_request=pending, author=reviewer, text="  Checked the lab page.  ")

    assert (note.author, note.text) == (reviewer, "Checked the lab page.")
    assert actions == ["access_request.note_added"]
    assert audit_event_for(pending, "access_request.note_added").details == {}


def test_an_empty_note_is_refused(reviewer, pending):
    with pytest.raises(ValidationError) as excinfo:
        access_request_note_add(access_request=pending, author=reviewer, text="   ")

    assert "text" in excinfo.value.message_dict
    assert not ReviewNote.objects.exists()


# --- Request more information ---------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [False, True])
def test_requesting_information_sends_the_request_back_to_the_applicant(reviewer, pending, claimed, new_audit_actions):
    if claimed:
        access_request_claim(access_request=pending, reviewer=reviewer)

    with new_audit_actions() as actions:
        result = access_request_request_info(
            access_request=pending, reviewer=reviewer, message="  Which cluster will hold the weights?  "
        )

    assert result.status == RequestStatus.INFO_REQUESTED
    message = pending.messages.get()
    assert (message.kind, message.author, message.text) == (
        MessageKind.INFO_REQUEST,
        reviewer,
        "Which cluster will hold the weights?",
    )
    decision = pending.decisions.get()
    assert (decision.kind, decision.reviewer, decision.review_round) == (DecisionKind.REQUEST_INFO, reviewer, 1)
    assert actions == ["access_request.info_requested"]


def test_requesting_information_needs_a_message(reviewer, pending):
    with pytest.raises(ValidationError) as excinfo:
        access_request_request_info(access_request=pending, reviewer=reviewer, message=" ")

    assert "reason" in excinfo.value.message_dict
    assert _reload(pending).status == RequestStatus.SUBMITTED


def test_information_cannot_be_requested_twice_before_the_applicant_answers(reviewer, pending):
    access_request_request_info(access_request=pending, reviewer=reviewer, message="Which cluster?")

    with pytest.raises(StateConflict) as excinfo:
        access_request_request_info(access_request=pending, reviewer=reviewer, message="And the GPUs?")

    assert excinfo.value.code == "not_in_queue"


def test_the_full_loop_of_more_information_edit_resubmit_and_approve(researcher, reviewer, pending, application):
    access_request_request_info(access_request=pending, reviewer=reviewer, message="Which cluster?")
    access_request_edit(access_request=pending, applicant=researcher, data=application(position="Senior researcher"))
    access_request_resubmit(access_request=pending, applicant=researcher, message="Our own cluster.")

    approved = access_request_approve(access_request=pending, reviewer=reviewer)

    assert approved.status == RequestStatus.APPROVED
    assert approved.position == "Senior researcher"
    assert _grants(researcher) == {"llama-7b": "license_required", "llama-13b": "license_required"}


# --- Approve --------------------------------------------------------------------------------------


def test_approving_everything_grants_each_variant_waiting_for_the_license(
    researcher, reviewer, pending, new_audit_actions, web_request, decisions_by_slug, audit_event_for
):
    with new_audit_actions() as actions:
        approved = access_request_approve(access_request=pending, reviewer=reviewer, request=web_request())

    assert approved.status == RequestStatus.APPROVED
    assert approved.decided_at is not None
    assert decisions_by_slug(pending) == {"llama-7b": "approved", "llama-13b": "approved"}
    assert _grants(researcher) == {"llama-7b": "license_required", "llama-13b": "license_required"}
    assert set(Grant.objects.values_list("request_id", flat=True)) == {pending.pk}
    assert set(Grant.objects.values_list("granted_by", flat=True)) == {reviewer.pk}
    assert pending.messages.get().text == "Approved: LLaMA 7B, LLaMA 13B. Accept the license to start downloading."
    assert actions == ["access_request.approved", "grant.created", "grant.created"]
    assert audit_event_for(pending, "access_request.approved").details == {
        "approved": ["llama-7b", "llama-13b"],
        "declined": [],
        "round": 1,
    }


def test_approving_a_subset_declines_the_other_variants(
    researcher, reviewer, pending, new_audit_actions, llama, decisions_by_slug, audit_event_for
):
    with new_audit_actions() as actions:
        access_request_approve(access_request=pending, reviewer=reviewer, variants=llama("llama-13b"))

    assert _reload(pending).status == RequestStatus.APPROVED
    assert decisions_by_slug(pending) == {"llama-7b": "declined", "llama-13b": "approved"}
    assert _grants(researcher) == {"llama-13b": "license_required"}
    assert pending.messages.get().text == (
        "Approved: LLaMA 13B. Accept the license to start downloading. Not approved: LLaMA 7B."
    )
    assert actions == ["access_request.approved", "grant.created"]
    assert audit_event_for(pending, "access_request.approved").details["declined"] == ["llama-7b"]


def test_an_approval_with_an_end_date_gives_grants_that_end_then(researcher, reviewer, pending):
    ends = timezone.now() + dt.timedelta(days=90)

    access_request_approve(access_request=pending, reviewer=reviewer, expires_at=ends)

    assert set(Grant.objects.values_list("expires_at", flat=True)) == {ends}
    assert _reload(pending).grant_expires_at == ends


def test_an_end_date_in_the_past_is_refused(reviewer, pending, new_audit_actions):
    with new_audit_actions() as actions, pytest.raises(ValidationError) as excinfo:
        access_request_approve(
            access_request=pending, reviewer=reviewer, expires_at=timezone.now() - dt.timedelta(minutes=1)
        )

    assert "expires_at" in excinfo.value.message_dict
    assert actions == []
    assert not Grant.objects.exists()


def test_approving_a_variant_that_was_not_requested_is_refused(reviewer, pending, llama):
    with pytest.raises(ValidationError) as excinfo:
        access_request_approve(access_request=pending, reviewer=reviewer, variants=llama("llama-33b"))

    assert "llama-33b" in excinfo.value.message_dict["variants"][0]
    assert _reload(pending).status == RequestStatus.SUBMITTED


def test_approving_an_empty_subset_is_refused(reviewer, pending):
    with pytest.raises(ValidationError) as excinfo:
        access_request_approve(access_request=pending, reviewer=reviewer, variants=[])

    assert "reject the request instead" in excinfo.value.message_dict["variants"][0]


# --- The two-person rule --------------------------------------------------------------------------


def test_a_65b_request_stays_pending_after_one_approval(
    researcher, reviewer, pending_65b, new_audit_actions, decisions_by_slug, audit_event_for
):
    assert approvals_needed(pending_65b) == 2

    with new_audit_actions() as actions:
        result = access_request_approve(access_request=pending_65b, reviewer=reviewer)

    assert result.status == RequestStatus.IN_REVIEW
    assert approvals_needed(result) == 1
    assert decisions_by_slug(pending_65b) == {"llama-65b": "pending"}
    assert not Grant.objects.exists()
    assert actions == ["access_request.approval_recorded"]
    details = audit_event_for(pending_65b, "access_request.approval_recorded").details
    assert details["waiting_for_second_approval"] == ["llama-65b"]


def test_the_same_reviewer_cannot_give_the_second_approval(reviewer, pending_65b, new_audit_actions):
    access_request_approve(access_request=pending_65b, reviewer=reviewer)

    with new_audit_actions() as actions, pytest.raises(StateConflict) as excinfo:
        access_request_approve(access_request=pending_65b, reviewer=reviewer)

    assert excinfo.value.code == "already_approved_by_you"
    assert actions == []
    assert approvals_needed(_reload(pending_65b)) == 1


def test_a_second_reviewers_approval_approves_the_65b_request(
    researcher, reviewer, second_reviewer, pending_65b, new_audit_actions
):
    access_request_approve(access_request=pending_65b, reviewer=reviewer)

    with new_audit_actions() as actions:
        result = access_request_approve(access_request=pending_65b, reviewer=second_reviewer)

    assert result.status == RequestStatus.APPROVED
    assert approvals_needed(result) == 0
    assert _grants(researcher) == {"llama-65b": "license_required"}
    assert Grant.objects.get().granted_by == second_reviewer
    assert actions == ["access_request.approved", "grant.created"]


def test_a_one_reviewer_variant_is_granted_while_a_two_reviewer_variant_waits(
    researcher, reviewer, second_reviewer, llama_catalog, submit, decisions_by_slug
):
    access_request = submit(researcher, "llama-7b", "llama-65b")

    access_request_approve(access_request=access_request, reviewer=reviewer)
    assert _reload(access_request).status == RequestStatus.IN_REVIEW
    assert decisions_by_slug(access_request) == {"llama-7b": "approved", "llama-65b": "pending"}
    assert _grants(researcher) == {"llama-7b": "license_required"}

    access_request_approve(access_request=access_request, reviewer=second_reviewer)
    assert _reload(access_request).status == RequestStatus.APPROVED
    assert _grants(researcher) == {"llama-7b": "license_required", "llama-65b": "license_required"}


def test_a_second_reviewer_may_decline_what_the_first_approved_but_not_what_was_granted(
    researcher, reviewer, second_reviewer, llama_catalog, submit, llama, decisions_by_slug
):
    access_request = submit(researcher, "llama-7b", "llama-65b")
    access_request_approve(access_request=access_request, reviewer=reviewer)

    # 7B was granted with the first approval; the second reviewer can only decide 65B now.
    with pytest.raises(ValidationError):
        access_request_approve(access_request=access_request, reviewer=second_reviewer, variants=llama("llama-7b"))
    access_request_reject(access_request=access_request, reviewer=second_reviewer, reason="65B is not needed.")

    assert _reload(access_request).status == RequestStatus.APPROVED  # it did give access, to 7B
    assert decisions_by_slug(access_request) == {"llama-7b": "approved", "llama-65b": "declined"}
    assert _grants(researcher) == {"llama-7b": "license_required"}


def test_after_a_resubmission_earlier_approvals_no_longer_count(researcher, reviewer, second_reviewer, pending_65b):
    access_request_approve(access_request=pending_65b, reviewer=reviewer)
    access_request_request_info(access_request=pending_65b, reviewer=second_reviewer, message="Which cluster?")
    access_request_resubmit(access_request=pending_65b, applicant=researcher)
    assert approvals_needed(_reload(pending_65b)) == 2

    result = access_request_approve(access_request=pending_65b, reviewer=second_reviewer)
    assert result.status == RequestStatus.IN_REVIEW  # the first reviewer's round-1 approval does not count
    assert approvals_needed(result) == 1

    # The first reviewer may approve again in the new round.
    result = access_request_approve(access_request=pending_65b, reviewer=reviewer)
    assert result.status == RequestStatus.APPROVED


def test_the_two_person_rule_follows_the_variant_setting(researcher, reviewer, llama_catalog, submit):
    ModelVariant.objects.filter(slug="llama-13b").update(approvals_required=2)
    access_request = submit(researcher, "llama-13b")

    assert access_request_approve(access_request=access_request, reviewer=reviewer).status == RequestStatus.IN_REVIEW


# --- Reviewers never decide their own request -----------------------------------------------------


@pytest.fixture
def own_request(reviewer, llama_catalog, submit):
    return submit(reviewer, full_name="Rita Reviewer", affiliation="Example Lab")


@pytest.mark.parametrize("action", ["claim", "note", "approve", "reject", "request_info"])
def test_a_reviewer_can_never_act_on_their_own_request(reviewer, own_request, action, new_audit_actions):
    calls = {
        "claim": lambda: access_request_claim(access_request=own_request, reviewer=reviewer),
        "note": lambda: access_request_note_add(access_request=own_request, author=reviewer, text="Fine."),
        "approve": lambda: access_request_approve(access_request=own_request, reviewer=reviewer),
        "reject": lambda: access_request_reject(access_request=own_request, reviewer=reviewer, reason="No."),
        "request_info": lambda: access_request_request_info(
            access_request=own_request, reviewer=reviewer, message="Why?"
        ),
    }

    with new_audit_actions() as actions, pytest.raises(PermissionDenied, match="own request"):
        calls[action]()

    assert actions == []
    assert _reload(own_request).status == RequestStatus.SUBMITTED
    assert not own_request.decisions.exists()


def test_an_admin_cannot_approve_their_own_request_either(admin_user, llama_catalog, submit):
    own = submit(admin_user, full_name="Adam Admin", affiliation="Example Lab")

    with pytest.raises(PermissionDenied):
        access_request_decide(access_request=own, reviewer=admin_user, decision="approve")


def test_another_reviewer_decides_a_reviewers_request(reviewer, second_reviewer, own_request):
    result = access_request_approve(access_request=own_request, reviewer=second_reviewer)

    assert result.status == RequestStatus.APPROVED
    assert _grants(reviewer) == {"llama-7b": "license_required"}


# --- Reject ---------------------------------------------------------------------------------------


def test_rejecting_records_the_reason_for_the_applicant(
    reviewer, pending, new_audit_actions, web_request, decisions_by_slug, audit_event_for
):
    with new_audit_actions() as actions:
        result = access_request_reject(
            access_request=pending, reviewer=reviewer, reason="  The use case is commercial.  ", request=web_request()
        )

    assert result.status == RequestStatus.REJECTED
    assert result.rejection_reason == "The use case is commercial."
    assert result.decided_at is not None
    assert decisions_by_slug(pending) == {"llama-7b": "declined", "llama-13b": "declined"}
    message = pending.messages.get()
    assert (message.kind, message.text) == (MessageKind.DECISION, "The use case is commercial.")
    decision = pending.decisions.get()
    assert (decision.kind, decision.reviewer, decision.reason) == (
        DecisionKind.REJECT,
        reviewer,
        "The use case is commercial.",
    )
    assert actions == ["access_request.rejected"]
    assert audit_event_for(pending, "access_request.rejected").details == {"reason": "The use case is commercial."}
    assert not Grant.objects.exists()


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_a_rejection_needs_a_reason(reviewer, pending, reason, new_audit_actions):
    with new_audit_actions() as actions, pytest.raises(ValidationError) as excinfo:
        access_request_reject(access_request=pending, reviewer=reviewer, reason=reason)

    assert "the applicant will read it" in excinfo.value.message_dict["reason"][0]
    assert actions == []
    assert _reload(pending).status == RequestStatus.SUBMITTED


def test_a_65b_request_with_one_approval_can_still_be_rejected(reviewer, second_reviewer, pending_65b):
    access_request_approve(access_request=pending_65b, reviewer=reviewer)

    result = access_request_reject(access_request=pending_65b, reviewer=second_reviewer, reason="Not research.")

    assert result.status == RequestStatus.REJECTED
    assert not Grant.objects.exists()


# --- Decisions on decided requests ----------------------------------------------------------------


@pytest.fixture
def approved(reviewer, pending):
    return access_request_approve(access_request=pending, reviewer=reviewer)


@pytest.fixture
def rejected(reviewer, pending):
    return access_request_reject(access_request=pending, reviewer=reviewer, reason="Not research.")


@pytest.mark.parametrize("decided", ["approved", "rejected"])
@pytest.mark.parametrize("decision", ["approve", "reject", "request_info"])
def test_a_decided_request_cannot_be_decided_again(request, second_reviewer, decided, decision, new_audit_actions):
    access_request = request.getfixturevalue(decided)
    grants_before = Grant.objects.count()

    with new_audit_actions() as actions, pytest.raises(StateConflict):
        access_request_decide(
            access_request=access_request, reviewer=second_reviewer, decision=decision, reason="Changed my mind."
        )

    assert actions == []
    assert _reload(access_request).status == decided
    assert Grant.objects.count() == grants_before


def test_a_withdrawn_request_cannot_be_approved(researcher, reviewer, pending):
    access_request_withdraw(access_request=pending, applicant=researcher)

    with pytest.raises(StateConflict):
        access_request_approve(access_request=pending, reviewer=reviewer)
    assert not Grant.objects.exists()


# --- The API's dispatcher -------------------------------------------------------------------------


def test_decide_dispatches_each_decision(reviewer, researcher, outsider, llama_catalog, submit, llama):
    first = submit(researcher, "llama-7b")
    second = submit(researcher, "llama-13b")
    third = submit(outsider, "llama-7b", full_name="Eve Example", affiliation="Elsewhere")

    ends = timezone.now() + dt.timedelta(days=30)
    assert (
        access_request_decide(
            access_request=first, reviewer=reviewer, decision="approve", variants=llama("llama-7b"), expires_at=ends
        ).status
        == RequestStatus.APPROVED
    )
    assert Grant.objects.get(request=first).expires_at == ends
    assert (
        access_request_decide(
            access_request=second, reviewer=reviewer, decision="reject", reason="Not research."
        ).status
        == RequestStatus.REJECTED
    )
    assert (
        access_request_decide(
            access_request=third, reviewer=reviewer, decision="request_info", reason="Which cluster?"
        ).status
        == RequestStatus.INFO_REQUESTED
    )


def test_decide_refuses_an_unknown_decision(reviewer, pending):
    with pytest.raises(ValidationError) as excinfo:
        access_request_decide(access_request=pending, reviewer=reviewer, decision="maybe")

    assert "decision" in excinfo.value.message_dict


# --- Bulk decisions -------------------------------------------------------------------------------


def test_bulk_reject_decides_what_it_can_and_reports_the_rest(
    reviewer, researcher, outsider, llama_catalog, submit, new_audit_actions
):
    clean = submit(researcher, "llama-7b")
    another = submit(outsider, "llama-7b", full_name="Eve Example", affiliation="Elsewhere")
    own = submit(reviewer, full_name="Rita Reviewer", affiliation="Example Lab")
    already = submit(researcher, "llama-13b")
    access_request_reject(access_request=already, reviewer=reviewer, reason="Earlier.")

    with new_audit_actions() as actions:
        done, failed = access_requests_bulk_decide(
            access_requests=[clean, own, another, already], reviewer=reviewer, decision="reject", reason="Out of scope."
        )

    assert [r.pk for r in done] == [clean.pk, another.pk]
    assert all(_reload(r).rejection_reason == "Out of scope." for r in done)
    assert set(failed) == {own.reference, already.reference}
    assert "own request" in failed[own.reference]
    assert "already rejected" in failed[already.reference]
    assert _reload(own).status == RequestStatus.SUBMITTED
    assert actions == ["access_request.rejected", "access_request.rejected"]


def test_bulk_approve_grants_each_request_and_reports_two_person_waits(
    reviewer, researcher, outsider, llama_catalog, submit
):
    small = submit(researcher, "llama-7b")
    large = submit(outsider, "llama-65b", full_name="Eve Example", affiliation="Elsewhere")

    done, failed = access_requests_bulk_decide(access_requests=[small, large], reviewer=reviewer, decision="approve")

    assert failed == {}
    assert [r.status for r in done] == [RequestStatus.APPROVED, RequestStatus.IN_REVIEW]
    assert _grants(researcher) == {"llama-7b": "license_required"}
    assert _grants(outsider) == {}


def test_bulk_reject_without_a_reason_decides_nothing(reviewer, pending):
    done, failed = access_requests_bulk_decide(access_requests=[pending], reviewer=reviewer, decision="reject")

    assert done == []
    assert "the applicant will read it" in failed[pending.reference]
    assert _reload(pending).status == RequestStatus.SUBMITTED


def test_bulk_decisions_are_approve_or_reject_only(reviewer, pending):
    with pytest.raises(ValidationError):
        access_requests_bulk_decide(
            access_requests=[pending], reviewer=reviewer, decision="request_info", reason="Why?"
        )


# --- approvals_needed -----------------------------------------------------------------------------


def test_approvals_needed_is_zero_once_a_request_is_decided(reviewer, rejected):
    assert approvals_needed(rejected) == 0


def test_approvals_needed_ignores_declined_variants(researcher, reviewer, llama_catalog, submit, decisions_by_slug):
    # 65B (two approvals) is declined by the embargo policy; the demo variant waits for one reviewer.
    access_request = submit(researcher, "llama-65b", "llama-demo-tiny", country="IR")

    assert decisions_by_slug(access_request) == {"llama-65b": "declined", "llama-demo-tiny": "pending"}
    assert approvals_needed(access_request) == 1


# --- Rejection templates --------------------------------------------------------------------------


def test_the_seed_creates_the_standard_rejection_templates(llama_catalog):
    titles = set(RejectionTemplate.objects.values_list("title", flat=True))

    assert titles == {title for title, _ in REJECTION_TEMPLATES}
    assert {
        "Use case outside research scope",
        "Affiliation could not be verified",
        "Export restrictions",
        "Commercial use",
    } <= titles
    assert all(template.is_active and len(template.text) > 50 for template in RejectionTemplate.objects.all())
    assert AuditEvent.objects.filter(action="review.rejection_template_created").count() == len(REJECTION_TEMPLATES)


def test_seeding_the_templates_again_keeps_reviewers_edits_and_adds_no_events(llama_catalog):
    RejectionTemplate.objects.filter(title="Commercial use").update(text="Edited by a reviewer.", is_active=False)
    events = AuditEvent.objects.count()

    assert rejection_templates_seed() == []
    llama_release_seed()

    edited = RejectionTemplate.objects.get(title="Commercial use")
    assert (edited.text, edited.is_active) == ("Edited by a reviewer.", False)
    assert RejectionTemplate.objects.count() == len(REJECTION_TEMPLATES)
    assert AuditEvent.objects.count() == events


def test_a_deleted_template_is_seeded_again(llama_catalog):
    RejectionTemplate.objects.filter(title="Export restrictions").delete()

    created = rejection_templates_seed()

    assert [template.title for template in created] == ["Export restrictions"]


def test_a_template_text_can_be_used_as_a_rejection_reason(reviewer, pending):
    template = RejectionTemplate.objects.get(title="Affiliation could not be verified")

    result = access_request_reject(access_request=pending, reviewer=reviewer, reason=template.text)

    assert result.rejection_reason == template.text


def test_admins_may_add_and_change_templates_and_reviewers_may_read_them(admin_user, reviewer):
    for permission in (
        "access.add_rejectiontemplate",
        "access.change_rejectiontemplate",
        "access.view_rejectiontemplate",
    ):
        assert admin_user.has_perm(permission)
    assert reviewer.has_perm("access.view_rejectiontemplate")
    assert not reviewer.has_perm("access.change_rejectiontemplate")
    assert not reviewer.has_perm("access.add_rejectiontemplate")
    assert not admin_user.has_perm("access.delete_rejectiontemplate")


def test_an_admin_adds_a_template_in_the_admin_and_it_is_audited(admin_user_client, admin_user, llama_catalog):
    response = admin_user_client.post(
        "/admin/access/rejectiontemplate/add/",
        {
            "title": "Incomplete application",
            "text": "Add links to your publications and apply again.",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    template = RejectionTemplate.objects.get(title="Incomplete application")
    event = AuditEvent.objects.get(action="review.rejection_template.created")
    assert (event.actor, event.target_id) == (admin_user, str(template.pk))


def test_an_admin_edits_and_retires_a_template_but_cannot_delete_it(admin_user_client, llama_catalog):
    template = RejectionTemplate.objects.get(title="Commercial use")
    url = f"/admin/access/rejectiontemplate/{template.pk}/change/"

    assert admin_user_client.get("/admin/access/rejectiontemplate/").status_code == 200
    response = admin_user_client.post(url, {"title": template.title, "text": "Shorter text."})

    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.text, template.is_active) == ("Shorter text.", False)
    assert AuditEvent.objects.get(action="review.rejection_template.changed").details == {
        "fields": ["is_active", "text"]
    }
    assert (
        admin_user_client.post(f"/admin/access/rejectiontemplate/{template.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert RejectionTemplate.objects.filter(pk=template.pk).exists()


def test_a_reviewer_cannot_reach_the_template_admin(reviewer_client, llama_catalog):
    response = reviewer_client.get("/admin/access/rejectiontemplate/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
