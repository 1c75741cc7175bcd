"""Reads about requests: the applicant's own requests, one request if the user may see it, its
queue position and estimated decision date, and its history.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from access.audit.models import AuditEvent
from access.grants.models import Grant, GrantStatus
from access.grants.selectors import grants_annotate_effective_status
from access.requests.models import (
    QUEUE_STATUSES,
    AccessRequest,
    RequestedVariant,
    RequestStatus,
    VariantDecision,
)

# Audit actions the applicant sees in their request's history (notes, flags and
# assignments are for reviewers only).
APPLICANT_HISTORY_ACTIONS = {
    "access_request.submitted": "Submitted",
    "access_request.info_requested": "More information requested",
    "access_request.edited": "Edited",
    "access_request.resubmitted": "Resubmitted",
    "access_request.approval_recorded": "First approval recorded; a second reviewer must approve",
    "access_request.approved": "Approved",
    "access_request.rejected": "Rejected",
    "access_request.withdrawn": "Withdrawn",
    "access_request.variants_declined_by_policy": "Some models declined by policy",
}


ESTIMATE_MAX_DAYS = 3650


def decisions_in_window(*, now: dt.datetime | None = None) -> int:
    """Requests approved or rejected in the last REVIEW_THROUGHPUT_WINDOW_DAYS days."""
    now = now or timezone.now()
    return AccessRequest.objects.filter(
        decided_at__gte=now - dt.timedelta(days=settings.REVIEW_THROUGHPUT_WINDOW_DAYS),
        decided_at__lte=now,
        status__in=(RequestStatus.APPROVED, RequestStatus.REJECTED),
    ).count()


def decisions_per_day(*, now: dt.datetime | None = None, decided: int | None = None) -> float:
    """Review throughput, in decisions per day: the observed rate over the window, shrunk towards
    REVIEW_DEFAULT_DECISIONS_PER_DAY, which counts as REVIEW_ESTIMATE_PRIOR_DECISIONS decisions.

    With no decisions this is the default rate; each decision moves it by at most a
    1/(prior + n) share, so one decision never turns "tomorrow" into "in four weeks", and with
    hundreds of decisions it is the observed rate. It always lies between the two rates."""
    if decided is None:
        decided = decisions_in_window(now=now)
    observed = decided / settings.REVIEW_THROUGHPUT_WINDOW_DAYS
    prior_weight = settings.REVIEW_ESTIMATE_PRIOR_DECISIONS
    default = settings.REVIEW_DEFAULT_DECISIONS_PER_DAY
    if decided + prior_weight <= 0:
        return default
    return (decided * observed + prior_weight * default) / (decided + prior_weight)


@dataclass(frozen=True)
class DecisionEstimate:
    """When a request in the queue should be decided, and what that guess rests on."""

    at: dt.datetime
    days: int
    position: int  # place in the queue, 1 for the oldest
    decisions: int  # decided requests in the window
    window_days: int
    from_history: bool  # False while the default pace outweighs the decisions seen

    @property
    def basis(self) -> str:
        """One sentence for the applicant: what the estimate is based on."""
        recent = f"{self.decisions} decision{'s' if self.decisions != 1 else ''} in the last {self.window_days} days"
        if self.from_history:
            return f"Based on {recent}."
        return f"Based on the pace our reviewers aim for, as there have been few decisions so far ({recent})."


def queue_position(access_request: AccessRequest) -> int | None:
    """1 for the oldest request waiting for a reviewer; None when not in the queue."""
    if access_request.status not in QUEUE_STATUSES:
        return None
    ahead = AccessRequest.objects.filter(status__in=QUEUE_STATUSES).filter(
        Q(submitted_at__lt=access_request.submitted_at)
        | Q(submitted_at=access_request.submitted_at, id__lt=access_request.id)
    )
    return ahead.count() + 1


def decision_estimate(access_request: AccessRequest, *, now: dt.datetime | None = None) -> DecisionEstimate | None:
    """The expected decision for a request in the queue: its position divided by the review
    throughput (``decisions_per_day``), in whole days, at least one; None outside the queue."""
    position = queue_position(access_request)
    if position is None:
        return None
    now = now or timezone.now()
    decided = decisions_in_window(now=now)
    # At least a day; at most ten years, which says "not soon" as well as any larger number would.
    days = min(ESTIMATE_MAX_DAYS, max(1, math.ceil(position / decisions_per_day(now=now, decided=decided))))
    return DecisionEstimate(
        at=now + dt.timedelta(days=days),
        days=days,
        position=position,
        decisions=decided,
        window_days=settings.REVIEW_THROUGHPUT_WINDOW_DAYS,
        from_history=decided >= settings.REVIEW_ESTIMATE_PRIOR_DECISIONS,
    )


def estimated_decision_at(access_request: AccessRequest, *, now: dt.datetime | None = None) -> dt.datetime | None:
    estimate = decision_estimate(access_request, now=now)
    return estimate.at if estimate else None


def request_audit_events(access_request: AccessRequest, *, with_grants: bool = False) -> QuerySet[AuditEvent]:
    """The request's audit events, oldest first; ``with_grants`` adds those of the grants it led to
    (what reviewers read)."""
    events = Q(target_type="access.accessrequest", target_id=str(access_request.pk))
    if with_grants:
        grant_ids = [str(pk) for pk in access_request.grants.values_list("pk", flat=True)]
        events |= Q(target_type="access.grant", target_id__in=grant_ids)
    return AuditEvent.objects.filter(events).order_by("occurred_at", "id")


# When some models of a request were granted before the rest was decided, these say so.
_PARTIAL_LABELS = {
    ("access_request.approval_recorded", "granted"): "Some models approved; the others wait for a second reviewer",
    ("access_request.rejected", "granted_before"): "The models still waiting were not approved",
    ("access_request.withdrawn", "granted_before"): "You withdrew the models still waiting",
}


def _history_label(event: AuditEvent) -> str:
    for (action, key), label in _PARTIAL_LABELS.items():
        if event.action == action and (event.details or {}).get(key):
            return label
    return APPLICANT_HISTORY_ACTIONS[event.action]


def request_history(access_request: AccessRequest) -> list[dict]:
    """The history the applicant is shown: the milestones of APPLICANT_HISTORY_ACTIONS, labelled."""
    events = request_audit_events(access_request).filter(action__in=APPLICANT_HISTORY_ACTIONS)
    return [{"at": event.occurred_at, "action": event.action, "label": _history_label(event)} for event in events]


def requests_for_applicant(user) -> QuerySet[AccessRequest]:
    return (
        AccessRequest.objects.filter(applicant=user)
        .prefetch_related(Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")))
        .order_by("-submitted_at", "-id")
    )


def access_request_get_for_applicant(user, request_id: int, *, missing: str = "No such request.") -> AccessRequest:
    """The user's own request, or 404 (``missing``): nobody learns that another's exists. The first
    line of every applicant view that takes a request id."""
    access_request = (
        requests_for_applicant(user).select_related("license__family").prefetch_related("messages").filter(pk=request_id)
    ).first()
    if access_request is None:
        raise Http404(missing)
    return access_request


def access_request_for_email(request_id: int) -> AccessRequest | None:
    """The request an email task is about, with its applicant; None once it is gone."""
    return AccessRequest.objects.select_related("applicant").filter(pk=request_id).first()


# How a granted model reads on the applicant's pages, by the grant's effective status: a model
# whose access was revoked, suspended or has ended never reads "Approved".
_GRANT_OUTCOMES = {
    GrantStatus.LICENSE_REQUIRED: ("approved", "Approved: accept the license"),
    GrantStatus.ACTIVE: ("approved", "Approved"),
    GrantStatus.SUSPENDED: ("suspended", "Access suspended"),
    GrantStatus.REVOKED: ("revoked", "Access revoked"),
    GrantStatus.EXPIRED: ("expired", "Access ended"),
}
_ENDED_GRANT_STATES = ("revoked", "suspended", "expired")  # most serious first


@dataclass
class VariantOutcome:
    """One requested model as the applicant reads it: its decision, then what became of its grant."""

    variant: object
    status: str  # a CSS/status key: pending, waiting, approved, declined, suspended, revoked, expired
    label: str
    grant: Grant | None = None


def requests_annotate_outcomes(access_requests, *, approvals: dict[int, dict[int, int]] | None = None) -> list:
    """Set ``outcomes`` (a VariantOutcome per requested model) and ``outcome_status`` /
    ``outcome_label`` (the request's badge) on each request, with one query for all their grants.

    ``approvals`` ({request id: {variant id: approvals this round}}) marks the models that have
    some approvals but wait for another reviewer; without it pending models read "Pending"."""
    access_requests = list(access_requests)
    grants = grants_annotate_effective_status(
        Grant.objects.filter(request__in=access_requests).select_related("variant__family").order_by("created_at", "id")
    )
    latest = {(grant.request_id, grant.variant_id): grant for grant in grants}
    for access_request in access_requests:
        counts = (approvals or {}).get(access_request.pk, {})
        outcomes = []
        for rv in access_request.requested_variants.all():
            grant = latest.get((access_request.pk, rv.variant_id))
            if rv.decision == VariantDecision.APPROVED:
                status, label = _GRANT_OUTCOMES[grant.effective_status] if grant else ("approved", "Approved")
            elif rv.decision == VariantDecision.DECLINED:
                status, label = "declined", "Not approved"
            elif access_request.is_open and 0 < counts.get(rv.variant_id, 0) < rv.variant.approvals_required:
                status, label = "waiting", "Waits for a second reviewer"
            else:
                status, label = "pending", "Pending"
            outcomes.append(VariantOutcome(variant=rv.variant, status=status, label=label, grant=grant))
        access_request.outcomes = outcomes
        access_request.outcome_status, access_request.outcome_label = _request_outcome(access_request, outcomes)
    return access_requests


def _request_outcome(access_request: AccessRequest, outcomes: list[VariantOutcome]) -> tuple[str, str]:
    granted = [o for o in outcomes if o.grant is not None and o.status not in ("declined", "pending", "waiting")]
    for state in _ENDED_GRANT_STATES:
        hit = [o for o in granted if o.status == state]
        if hit:
            word = {"revoked": "Access revoked", "suspended": "Access suspended", "expired": "Access ended"}[state]
            label = word if len(hit) == len(granted) else f"{word} for some models"
            if access_request.is_open:
                # Other models of the request still wait for a reviewer: the badge says both.
                label += "; the rest is in review"
            return state, label
    if access_request.status == RequestStatus.IN_REVIEW and granted:
        return "in_review", "Partly approved"
    if access_request.status == RequestStatus.APPROVED and any(o.status == "declined" for o in outcomes):
        return "approved", "Approved in part"
    return access_request.status, access_request.get_status_display()
