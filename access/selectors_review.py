"""Reads for the review queue, the applicant's status page and the statistics."""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from access.models import (
    QUEUE_STATUSES,
    AccessRequest,
    AuditEvent,
    DecisionKind,
    RequestedVariant,
    RequestStatus,
    ReviewDecision,
    ScreeningFlag,
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


def review_queue(
    *,
    status: str | None = None,
    variant: str | None = None,
    organization_type: str | None = None,
    country: str | None = None,
    flag: str | None = None,
    assignee: str | None = None,
    reviewer=None,
) -> QuerySet[AccessRequest]:
    """Requests for reviewers, oldest first, with what a list row shows prefetched:
    the number of queries does not depend on the number of requests."""
    requests = AccessRequest.objects.select_related("applicant", "assignee").prefetch_related(
        Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")),
        Prefetch("flags", queryset=ScreeningFlag.objects.order_by("code")),
    )
    if status:
        requests = requests.filter(status=status)
    else:
        requests = requests.filter(status__in=QUEUE_STATUSES)
    # EXISTS rather than joins: no duplicate rows, so no DISTINCT over every column,
    # which made SQLite sort the whole queue on each page (and its count).
    if variant:
        requests = requests.filter(
            Exists(RequestedVariant.objects.filter(request=OuterRef("pk"), variant__slug=variant))
        )
    if organization_type:
        requests = requests.filter(organization_type=organization_type)
    if country:
        requests = requests.filter(country=country.upper())
    if flag:
        requests = requests.filter(Exists(ScreeningFlag.objects.filter(request=OuterRef("pk"), code=flag)))
    if assignee == "me" and reviewer is not None:
        requests = requests.filter(assignee=reviewer)
    elif assignee == "none":
        requests = requests.filter(assignee__isnull=True)
    elif assignee:
        requests = requests.filter(assignee__email__iexact=assignee)
    return requests.order_by("submitted_at", "id")


def review_status_counts() -> dict[str, int]:
    counts = dict(AccessRequest.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in RequestStatus.values}


def decisions_per_day(*, now: dt.datetime | None = None) -> float:
    """Recent review throughput: decided requests per day over the configured window."""
    now = now or timezone.now()
    window = settings.REVIEW_THROUGHPUT_WINDOW_DAYS
    decided = AccessRequest.objects.filter(
        decided_at__gte=now - dt.timedelta(days=window),
        status__in=(RequestStatus.APPROVED, RequestStatus.REJECTED),
    ).count()
    return decided / window if decided else settings.REVIEW_DEFAULT_DECISIONS_PER_DAY


def queue_position(access_request: AccessRequest) -> int | None:
    """1 for the oldest request waiting for a reviewer; None when not in the queue."""
    if access_request.status not in QUEUE_STATUSES:
        return None
    ahead = AccessRequest.objects.filter(status__in=QUEUE_STATUSES).filter(
        Q(submitted_at__lt=access_request.submitted_at)
        | Q(submitted_at=access_request.submitted_at, id__lt=access_request.id)
    )
    return ahead.count() + 1


def estimated_decision_at(access_request: AccessRequest, *, now: dt.datetime | None = None) -> dt.datetime | None:
    position = queue_position(access_request)
    if position is None:
        return None
    now = now or timezone.now()
    days = math.ceil(position / decisions_per_day(now=now))
    return now + dt.timedelta(days=days)


def request_history(access_request: AccessRequest) -> list[dict]:
    events = AuditEvent.objects.filter(
        target_type="access.accessrequest",
        target_id=str(access_request.pk),
        action__in=APPLICANT_HISTORY_ACTIONS,
    ).order_by("occurred_at", "id")
    return [
        {"at": event.occurred_at, "action": event.action, "label": APPLICANT_HISTORY_ACTIONS[event.action]}
        for event in events
    ]


def requests_for_applicant(user) -> QuerySet[AccessRequest]:
    return (
        AccessRequest.objects.filter(applicant=user)
        .prefetch_related(Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")))
        .order_by("-submitted_at", "-id")
    )


def review_requests_annotate_approvals(access_requests) -> list[AccessRequest]:
    """Set ``approvals_still_needed`` (what ``services.review.approvals_needed`` returns)
    and ``approvers_by_variant`` ({variant id: reviewer ids or policy rules of this
    round}) on each request, in one query whatever their number.

    Reads the pending variants from ``requested_variants`` (prefetched with their
    variant by ``review_queue``), so a list page does not query per row."""
    access_requests = list(access_requests)
    rounds = {access_request.pk: access_request.review_round for access_request in access_requests}
    approvers: dict[int, dict[int, set]] = {pk: {} for pk in rounds}
    if rounds:
        rows = ReviewDecision.variants.through.objects.filter(
            reviewdecision__request_id__in=rounds, reviewdecision__kind=DecisionKind.APPROVE
        ).values_list(
            "reviewdecision__request_id",
            "reviewdecision__review_round",
            "reviewdecision__reviewer_id",
            "reviewdecision__policy_rule",
            "modelvariant_id",
        )
        for request_id, review_round, reviewer_id, policy_rule, variant_id in rows:
            if review_round == rounds[request_id]:  # a resubmission starts a new round
                approvers[request_id].setdefault(variant_id, set()).add(reviewer_id or policy_rule)
    for access_request in access_requests:
        access_request.approvers_by_variant = approvers[access_request.pk]
        needed = [
            max(0, rv.variant.approvals_required - len(approvers[access_request.pk].get(rv.variant_id, ())))
            for rv in access_request.requested_variants.all()
            if rv.decision == VariantDecision.PENDING
        ]
        access_request.approvals_still_needed = max(needed, default=0) if access_request.is_open else 0
    return access_requests
