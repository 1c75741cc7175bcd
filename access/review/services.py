"""The reviewers' side of a request, every write: claim and assign, notes, decisions (approve per
variant, reject with a reason, request more information) under the two-person rule, bulk
decisions, and the policies that decide automatically on submission (the embargo rule and the
allow-listed email domains)."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from access.audit.services import audit_event_record
from access.catalog.models import ModelVariant
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_create, grant_end_check
from access.requests.models import (
    QUEUE_STATUSES,
    AccessRequest,
    MessageKind,
    RequestMessage,
    RequestStatus,
    ScreeningFlagCode,
    VariantDecision,
)
from access.review import tasks
from access.review.models import DecisionKind, ReviewDecision, ReviewNote
from access.review.selectors import approvals_by_variant, pending_variants
from portal.errors import StateConflict
from portal.models import User
from portal.validators import text_length_check


def reviewer_can_review(user) -> bool:
    return user.is_authenticated and user.has_perm("access.review_access")


def _require_reviewer(reviewer: User, access_request: AccessRequest) -> None:
    if not reviewer_can_review(reviewer):
        raise PermissionDenied("Only reviewers can do this.")
    if access_request.applicant_id == reviewer.pk:
        raise PermissionDenied("You cannot review your own request; another reviewer must decide it.")


def _locked(access_request: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_for_update().get(pk=access_request.pk)


def _require_decidable(access_request: AccessRequest) -> None:
    if not access_request.is_open:
        raise StateConflict(
            f"{access_request.reference} is already {access_request.get_status_display().lower()}.",
            code="already_decided",
        )


@transaction.atomic
def access_request_claim(*, access_request: AccessRequest, reviewer: User, assignee: User | None = None, request=None):
    """Take a request (or hand it to another reviewer); a submitted one moves to in_review."""
    access_request = _locked(access_request)
    _require_reviewer(reviewer, access_request)
    _require_decidable(access_request)
    assignee = assignee or reviewer
    if not reviewer_can_review(assignee):
        raise ValidationError({"assignee": [f"{assignee.email} is not a reviewer."]})
    if assignee.pk == access_request.applicant_id:
        raise ValidationError({"assignee": ["The applicant cannot review their own request."]})
    previous = access_request.assignee
    access_request.assignee = assignee
    fields = ["assignee", "updated_at"]
    if access_request.status == RequestStatus.SUBMITTED:
        access_request.status = RequestStatus.IN_REVIEW
        fields.append("status")
    access_request.save(update_fields=fields)
    audit_event_record(
        action="access_request.assigned",
        actor=reviewer,
        target=access_request,
        request=request,
        details={"assignee": assignee.email, "previous": previous.email if previous else None},
    )
    return access_request


@transaction.atomic
def access_request_note_add(*, access_request: AccessRequest, author: User, text: str, request=None) -> ReviewNote:
    _require_reviewer(author, access_request)
    if not text.strip():
        raise ValidationError({"text": ["Write the note first."]})
    text_length_check(field="text", text=text)
    note = ReviewNote(request=access_request, author=author, text=text.strip())
    note.full_clean()
    note.save()
    # The note's text stays out of the audit log: the log is wider-read than notes are.
    audit_event_record(action="access_request.note_added", actor=author, target=access_request, request=request)
    return note


def decision_record(*, access_request, reviewer, kind, reason="", variants=(), policy_rule="") -> ReviewDecision:
    decision = ReviewDecision.objects.create(
        request=access_request,
        reviewer=reviewer,
        policy_rule=policy_rule,
        kind=kind,
        reason=reason,
        review_round=access_request.review_round,
    )
    if variants:
        decision.variants.set(variants)
    return decision


@transaction.atomic
def access_request_approve(
    *,
    access_request: AccessRequest,
    reviewer: User | None,
    variants: list[ModelVariant] | None = None,
    expires_at: dt.datetime | None = None,
    policy_rule: str = "",
    request=None,
) -> AccessRequest:
    """Approve all or some of the pending variants.

    Variants left out are declined. Each chosen variant is granted as soon as
    ``approvals_required`` different reviewers approved it in this round, whatever the
    others still wait for (two-person rule per variant); the request stays in review
    while any variant waits, and is approved once none does. Variants this request already
    granted are not approved twice: naming them again changes nothing.
    """
    access_request = _locked(access_request)
    if reviewer is not None:
        _require_reviewer(reviewer, access_request)
    _require_decidable(access_request)
    pending = pending_variants(access_request)
    granted_before = _approved_variants(access_request)
    chosen = pending if variants is None else [v for v in dict.fromkeys(variants) if v not in granted_before]
    unknown = [v.slug for v in chosen if v not in pending]
    if unknown:
        raise ValidationError(
            {"variants": [f"Not pending in this request: {', '.join(unknown)}. Approve among the requested models."]}
        )
    if not chosen:
        if variants and granted_before:
            raise ValidationError(
                {"variants": ["These models are approved already; choose among those still pending."]}
            )
        raise ValidationError({"variants": ["Approve at least one model, or reject the request instead."]})
    if Grant.objects.filter(
        user_id=access_request.applicant_id, status=GrantStatus.REVOKED, blocks_new_requests=True
    ).exists():
        raise StateConflict(
            "The applicant's access was revoked with new requests blocked; reject this request instead.",
            code="applicant_blocked",
        )
    if expires_at is not None:
        grant_end_check(expires_at)
    if reviewer is not None and access_request.decisions.filter(
        kind=DecisionKind.APPROVE, review_round=access_request.review_round, reviewer=reviewer
    ).exists():
        raise StateConflict(
            "You have already approved this request; the two-person rule needs a different reviewer.",
            code="already_approved_by_you",
        )

    declined = [v for v in pending if v not in chosen]
    if declined:
        access_request.requested_variants.filter(variant__in=declined).update(decision=VariantDecision.DECLINED)
    decision_record(
        access_request=access_request,
        reviewer=reviewer,
        kind=DecisionKind.APPROVE,
        variants=chosen,
        policy_rule=policy_rule,
    )
    if expires_at is not None:
        access_request.grant_expires_at = expires_at
    counts = approvals_by_variant(access_request)
    ready = [v for v in chosen if counts.get(v.pk, 0) >= v.approvals_required]
    waiting = [v for v in chosen if v not in ready]
    details = {
        "approved": [v.slug for v in chosen],
        "declined": [v.slug for v in declined],
        "round": access_request.review_round,
    }
    if policy_rule:
        details["policy"] = policy_rule
    if ready:
        access_request.requested_variants.filter(variant__in=ready).update(decision=VariantDecision.APPROVED)
    if waiting:
        access_request.status = RequestStatus.IN_REVIEW
        access_request.save(update_fields=["status", "grant_expires_at", "updated_at"])
        details["granted"] = [v.slug for v in ready]
        details["waiting_for_second_approval"] = [v.slug for v in waiting]
        audit_event_record(
            action="access_request.approval_recorded",
            actor=reviewer,
            target=access_request,
            request=request,
            details=details,
        )
    else:
        access_request.status = RequestStatus.APPROVED
        access_request.decided_at = timezone.now()
        access_request.save(update_fields=["status", "decided_at", "grant_expires_at", "updated_at"])
        audit_event_record(
            action="access_request.approved", actor=reviewer, target=access_request, request=request, details=details
        )
    if not ready:
        return access_request  # one approval recorded; nothing changes for the applicant yet

    text = f"Approved: {', '.join(v.name for v in ready)}. Accept the license to start downloading."
    if waiting:
        text += (
            f" Still waiting for a second reviewer: {', '.join(v.name for v in waiting)}; "
            "we will write again once they decide."
        )
    if declined:
        text += f" Not approved: {', '.join(v.name for v in declined)}."
    RequestMessage.objects.create(request=access_request, author=reviewer, kind=MessageKind.DECISION, text=text)
    for variant in ready:
        grant_create(
            user=access_request.applicant,
            variant=variant,
            actor=reviewer,
            access_request=access_request,
            expires_at=access_request.grant_expires_at,
            request=request,
        )
    _notify_decision(access_request, in_part=bool(waiting or granted_before))
    return access_request


def _approved_variants(access_request: AccessRequest) -> list[ModelVariant]:
    return [
        rv.variant
        for rv in access_request.requested_variants.select_related("variant").filter(
            decision=VariantDecision.APPROVED
        )
    ]


@transaction.atomic
def access_request_reject(
    *, access_request: AccessRequest, reviewer: User | None, reason: str, policy_rule: str = "", request=None
) -> AccessRequest:
    """Decline every variant still pending, with a reason the applicant reads.

    Variants this request already granted (see ``access_request_approve``) stay granted, and
    the request then ends ``approved``: it did give access, to fewer models than asked for.
    Each variant's own decision says which were declined."""
    access_request = _locked(access_request)
    if reviewer is not None:
        _require_reviewer(reviewer, access_request)
    _require_decidable(access_request)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Give the reason; the applicant will read it."]})
    text_length_check(field="reason", text=reason)
    declined = pending_variants(access_request)
    granted = _approved_variants(access_request)
    access_request.requested_variants.filter(decision=VariantDecision.PENDING).update(
        decision=VariantDecision.DECLINED
    )
    decision_record(
        access_request=access_request,
        reviewer=reviewer,
        kind=DecisionKind.REJECT,
        reason=reason,
        policy_rule=policy_rule,
    )
    access_request.status = RequestStatus.APPROVED if granted else RequestStatus.REJECTED
    access_request.rejection_reason = reason
    access_request.decided_at = timezone.now()
    access_request.save(update_fields=["status", "rejection_reason", "decided_at", "updated_at"])
    text = reason
    if granted:
        text = (
            f"Not approved: {', '.join(v.name for v in declined)}. {reason}\n\n"
            f"Your access to {', '.join(v.name for v in granted)} stays as it is."
        )
    RequestMessage.objects.create(request=access_request, author=reviewer, kind=MessageKind.DECISION, text=text)
    details = {"reason": reason}
    if granted:
        details["declined"] = [v.slug for v in declined]
        details["granted_before"] = [v.slug for v in granted]
    if policy_rule:
        details["policy"] = policy_rule
    audit_event_record(
        action="access_request.rejected", actor=reviewer, target=access_request, request=request, details=details
    )
    _notify_decision(access_request, in_part=bool(granted))
    return access_request


@transaction.atomic
def access_request_request_info(
    *, access_request: AccessRequest, reviewer: User, message: str, request=None
) -> AccessRequest:
    access_request = _locked(access_request)
    _require_reviewer(reviewer, access_request)
    if access_request.status not in QUEUE_STATUSES:
        raise StateConflict(
            f"{access_request.reference} is {access_request.get_status_display().lower()}; "
            "more information can be asked only of a request in the queue.",
            code="not_in_queue",
        )
    message = (message or "").strip()
    if not message:
        raise ValidationError({"reason": ["Say what information you need; the applicant will read it."]})
    text_length_check(field="reason", text=message)
    decision_record(
        access_request=access_request, reviewer=reviewer, kind=DecisionKind.REQUEST_INFO, reason=message
    )
    access_request.status = RequestStatus.INFO_REQUESTED
    access_request.save(update_fields=["status", "updated_at"])
    RequestMessage.objects.create(
        request=access_request, author=reviewer, kind=MessageKind.INFO_REQUEST, text=message
    )
    audit_event_record(
        action="access_request.info_requested", actor=reviewer, target=access_request, request=request
    )
    transaction.on_commit(lambda: tasks.notify_info_requested.delay(access_request.pk))
    return access_request


def access_request_decide(
    *,
    access_request: AccessRequest,
    reviewer: User,
    decision: str,
    reason: str = "",
    variants: list[ModelVariant] | None = None,
    expires_at: dt.datetime | None = None,
    request=None,
) -> AccessRequest:
    """One entry point for the API's ``decision`` field."""
    if decision == DecisionKind.APPROVE:
        return access_request_approve(
            access_request=access_request, reviewer=reviewer, variants=variants, expires_at=expires_at, request=request
        )
    if decision == DecisionKind.REJECT:
        return access_request_reject(access_request=access_request, reviewer=reviewer, reason=reason, request=request)
    if decision == DecisionKind.REQUEST_INFO:
        return access_request_request_info(
            access_request=access_request, reviewer=reviewer, message=reason, request=request
        )
    raise ValidationError({"decision": ["Choose approve, reject or request_info."]})


def access_requests_bulk_decide(
    *, access_requests: list[AccessRequest], reviewer: User, decision: str, reason: str = "", request=None
) -> tuple[list[AccessRequest], dict[str, str]]:
    """Approve or reject many requests with one reason. Each request is its own
    transaction: one that cannot be decided (own request, already decided) is
    reported and the others go through."""
    if decision not in (DecisionKind.APPROVE, DecisionKind.REJECT):
        raise ValidationError({"decision": ["Bulk decisions are approve or reject."]})
    done, failed = [], {}
    for access_request in access_requests:
        try:
            done.append(
                access_request_decide(
                    access_request=access_request, reviewer=reviewer, decision=decision, reason=reason, request=request
                )
            )
        except (ValidationError, PermissionDenied, StateConflict) as exc:
            failed[access_request.reference] = getattr(exc, "message", None) or "; ".join(
                getattr(exc, "messages", [str(exc)])
            )
    return done, failed


def _notify_decision(access_request: AccessRequest, *, in_part: bool = False) -> None:
    """The decision email; ``in_part`` when only some models are decided, or some were granted
    before: that email lists each model's outcome (granted, waiting, not approved)."""
    if in_part:
        transaction.on_commit(lambda: tasks.notify_decision_in_part.delay(access_request.pk))
    else:
        transaction.on_commit(lambda: tasks.notify_decision.delay(access_request.pk))


POLICY_EMBARGO_REJECT = "embargoed_country_reject"


POLICY_DOMAIN_APPROVE = "allow_listed_domain_approve"


EMBARGO_REASON = (
    "We cannot offer access to applicants in your country because of export restrictions on these weights."
)


def access_request_apply_policies(*, access_request: AccessRequest, auto_approve: bool = True) -> AccessRequest:
    """Per-variant policies, each recorded as a decision naming its rule. On submit all of them
    run; on resubmit only the embargo rule (``auto_approve=False``): a reviewer asked for the new
    information, so a reviewer decides on it, unless the answer puts the applicant in an embargoed
    country. Only this round's screening flags count."""
    flags = set(access_request.flags.filter(review_round=access_request.review_round).values_list("code", flat=True))
    pending = pending_variants(access_request)
    if ScreeningFlagCode.EMBARGOED_COUNTRY in flags and _approved_variants(access_request):
        # This request already gave access (a partial approval before the applicant's answer moved
        # them to an embargoed country): declining only what waits would leave that access live
        # with nobody looking. A reviewer decides, and may revoke.
        return access_request
    if ScreeningFlagCode.EMBARGOED_COUNTRY in flags:
        embargoed = [v for v in pending if v.auto_reject_embargoed]
        if embargoed and len(embargoed) == len(pending):
            return access_request_reject(
                access_request=access_request, reviewer=None, reason=EMBARGO_REASON, policy_rule=POLICY_EMBARGO_REJECT
            )
        if embargoed:
            access_request.requested_variants.filter(variant__in=embargoed).update(decision=VariantDecision.DECLINED)
            decision_record(
                access_request=access_request,
                reviewer=None,
                kind=DecisionKind.REJECT,
                reason=EMBARGO_REASON,
                variants=embargoed,
                policy_rule=POLICY_EMBARGO_REJECT,
            )
            # The applicant reads why these models were declined; the rest goes to a reviewer.
            RequestMessage.objects.create(
                request=access_request,
                kind=MessageKind.DECISION,
                text=f"Not approved: {', '.join(v.name for v in embargoed)}. {EMBARGO_REASON}",
            )
            audit_event_record(
                action="access_request.variants_declined_by_policy",
                target=access_request,
                details={"policy": POLICY_EMBARGO_REJECT, "variants": [v.slug for v in embargoed]},
            )
            pending = [v for v in pending if v not in embargoed]
    if flags or not pending or not auto_approve:
        return access_request  # any screening flag means a person looks at it
    domain = access_request.applicant.email.rsplit("@", 1)[-1].lower()

    def allowed(variant: ModelVariant) -> bool:
        domains = [d.lower().lstrip(".") for d in variant.auto_approve_email_domains]
        return variant.approvals_required == 1 and any(domain == d or domain.endswith("." + d) for d in domains)

    if all(allowed(v) for v in pending):
        return access_request_approve(
            access_request=access_request, reviewer=None, variants=pending, policy_rule=POLICY_DOMAIN_APPROVE
        )
    return access_request
