"""Reads about requests: the applicant's own requests, one request if the user may see it, its
queue position and estimated decision date, and its history.
"""

from __future__ import annotations

import datetime as dt
import math

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from access.audit.models import AuditEvent
from access.requests.models import QUEUE_STATUSES, AccessRequest, RequestedVariant, RequestStatus

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


def request_audit_events(access_request: AccessRequest, *, with_grants: bool = False) -> QuerySet[AuditEvent]:
    """The request's audit events, oldest first; ``with_grants`` adds those of the grants it led to
    (what reviewers read)."""
    events = Q(target_type="access.accessrequest", target_id=str(access_request.pk))
    if with_grants:
        grant_ids = [str(pk) for pk in access_request.grants.values_list("pk", flat=True)]
        events |= Q(target_type="access.grant", target_id__in=grant_ids)
    return AuditEvent.objects.filter(events).order_by("occurred_at", "id")


def request_history(access_request: AccessRequest) -> list[dict]:
    """The history the applicant is shown: the milestones of APPLICANT_HISTORY_ACTIONS, labelled."""
    events = request_audit_events(access_request).filter(action__in=APPLICANT_HISTORY_ACTIONS)
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
