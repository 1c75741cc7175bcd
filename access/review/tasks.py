"""The reviewers' Celery tasks: decision (whole or in part) and information-request emails, and the daily digest."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from access.notifications.services import (
    EMAIL_TASK_OPTIONS,
    absolute_url,
    email_send,
    request_status_url,
    reviewer_emails,
)
from access.requests.models import RequestStatus, VariantDecision
from access.requests.selectors import access_request_for_email
from access.review.selectors import review_queue


@shared_task(name="access.notify_info_requested", **EMAIL_TASK_OPTIONS)
def notify_info_requested(request_id: int) -> None:
    access_request = access_request_for_email(request_id)
    if access_request is None:
        return
    message = access_request.messages.order_by("-created_at", "-id").first()
    email_send(
        to=[access_request.applicant.email],
        template="info_requested",
        context={"request": access_request, "message": message, "url": request_status_url(access_request)},
    )


@shared_task(name="access.notify_decision", **EMAIL_TASK_OPTIONS)
def notify_decision(request_id: int) -> None:
    access_request = access_request_for_email(request_id)
    if access_request is None:
        return
    email_send(
        to=[access_request.applicant.email],
        template="decision",
        context={
            "request": access_request,
            "approved": access_request.status == RequestStatus.APPROVED,
            "variants": [rv for rv in access_request.requested_variants.select_related("variant")],
            "url": request_status_url(access_request),
            "grants_url": absolute_url(reverse("grants")),
        },
    )


@shared_task(name="access.notify_decision_in_part", **EMAIL_TASK_OPTIONS)
def notify_decision_in_part(request_id: int) -> None:
    """The decision email when the models of one request are decided apart: what is granted now,
    what still waits for a second reviewer, and what was not approved (with the reason)."""
    access_request = access_request_for_email(request_id)
    if access_request is None:
        return
    by_decision: dict[str, list] = {decision: [] for decision in VariantDecision.values}
    for rv in access_request.requested_variants.select_related("variant"):
        by_decision[rv.decision].append(rv.variant)
    email_send(
        to=[access_request.applicant.email],
        template="decision_in_part",
        context={
            "request": access_request,
            "granted": by_decision[VariantDecision.APPROVED],
            "waiting": by_decision[VariantDecision.PENDING] if access_request.is_open else [],
            "declined": by_decision[VariantDecision.DECLINED],
            "url": request_status_url(access_request),
            "grants_url": absolute_url(reverse("grants")),
        },
    )


@shared_task(name="access.reviewer_digest_send", ignore_result=True, soft_time_limit=120, time_limit=180)
def reviewer_digest_send() -> int:
    """Daily summary for reviewers when REVIEWER_NOTIFICATIONS is 'digest'."""
    if settings.REVIEWER_NOTIFICATIONS != "digest":
        return 0
    since = timezone.now() - dt.timedelta(days=1)
    waiting = review_queue()
    new = [r for r in waiting.filter(submitted_at__gte=since)]
    total = waiting.count()
    if not total:
        return 0
    return email_send(
        to=[],
        bcc=reviewer_emails(),
        template="reviewer_digest",
        context={"new": new, "total": total, "oldest": waiting.first(), "url": absolute_url(reverse("review-queue"))},
    )
