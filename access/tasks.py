"""Celery tasks of the access workflow. Thin: they take ids, load rows, call a
service or send an email. Enqueued by services only after their transaction commits."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from access.models import AccessRequest, RequestStatus
from access.notifications import email_send, request_status_url, review_url, reviewer_emails
from access.selectors_review import estimated_decision_at, queue_position

EMAIL_TASK_OPTIONS = {
    "ignore_result": True,
    "autoretry_for": (OSError,),  # SMTP hiccups: retry with back-off
    "retry_backoff": 30,
    "max_retries": 5,
    "soft_time_limit": 60,
    "time_limit": 90,
}


def _request(request_id: int) -> AccessRequest | None:
    return AccessRequest.objects.select_related("applicant").filter(pk=request_id).first()


@shared_task(name="access.notify_request_submitted", **EMAIL_TASK_OPTIONS)
def notify_request_submitted(request_id: int) -> None:
    access_request = _request(request_id)
    if access_request is None:
        return
    email_send(
        to=[access_request.applicant.email],
        template="request_submitted",
        context={
            "request": access_request,
            "url": request_status_url(access_request),
            "position": queue_position(access_request),
            "estimate": estimated_decision_at(access_request),
        },
    )
    if access_request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
        return  # decided by policy at once; the decision email follows
    if settings.REVIEWER_NOTIFICATIONS == "immediate":
        email_send(
            to=[],
            bcc=reviewer_emails(excluding=access_request.applicant),
            template="reviewer_new_request",
            context={"request": access_request, "url": review_url(access_request), "resubmitted": False},
        )


@shared_task(name="access.notify_reviewers_request_resubmitted", **EMAIL_TASK_OPTIONS)
def notify_reviewers_request_resubmitted(request_id: int) -> None:
    access_request = _request(request_id)
    if access_request is None or settings.REVIEWER_NOTIFICATIONS != "immediate":
        return
    assigned = access_request.assignee and access_request.assignee != access_request.applicant
    email_send(
        to=[access_request.assignee.email] if assigned else [],
        bcc=[] if assigned else reviewer_emails(excluding=access_request.applicant),
        template="reviewer_new_request",
        context={"request": access_request, "url": review_url(access_request), "resubmitted": True},
    )


@shared_task(name="access.notify_info_requested", **EMAIL_TASK_OPTIONS)
def notify_info_requested(request_id: int) -> None:
    access_request = _request(request_id)
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
    access_request = _request(request_id)
    if access_request is None:
        return
    from django.urls import reverse

    from access.notifications import absolute_url

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


@shared_task(name="access.reviewer_digest_send", ignore_result=True, soft_time_limit=120, time_limit=180)
def reviewer_digest_send() -> int:
    """Daily summary for reviewers when REVIEWER_NOTIFICATIONS is 'digest'."""
    if settings.REVIEWER_NOTIFICATIONS != "digest":
        return 0
    from access.selectors_review import review_queue

    since = timezone.now() - dt.timedelta(days=1)
    waiting = review_queue()
    new = [r for r in waiting.filter(submitted_at__gte=since)]
    total = waiting.count()
    if not total:
        return 0
    from django.urls import reverse

    from access.notifications import absolute_url

    return email_send(
        to=[],
        bcc=reviewer_emails(),
        template="reviewer_digest",
        context={"new": new, "total": total, "oldest": waiting.first(), "url": absolute_url(reverse("review-queue"))},
    )


@shared_task(name="access.grants_expire_due", ignore_result=True, soft_time_limit=300, time_limit=360)
def grants_expire_due() -> int:
    from access.services.grants import grants_expire_due as expire

    return expire()


@shared_task(name="access.grants_remind_expiring", ignore_result=True, soft_time_limit=300, time_limit=360)
def grants_remind_expiring() -> int:
    """Claim each due reminder once, then hand the email to its own task, which
    retries on mail-server errors (a claimed reminder is never lost to one)."""
    from access.services.grants import grant_mark_reminded, grants_due_for_reminder

    claimed = 0
    for grant in grants_due_for_reminder():
        if grant_mark_reminded(grant=grant):
            notify_grant_expiring.delay(grant.pk)
            claimed += 1
    return claimed


@shared_task(name="access.notify_grant_expiring", **EMAIL_TASK_OPTIONS)
def notify_grant_expiring(grant_id: int) -> None:
    from django.urls import reverse

    from access.models import Grant
    from access.notifications import absolute_url

    grant = Grant.objects.select_related("user", "variant").filter(pk=grant_id).first()
    if grant is None or grant.expires_at is None:
        return
    email_send(
        to=[grant.user.email],
        template="grant_expiring",
        context={"grant": grant, "url": absolute_url(reverse("grants"))},
    )


@shared_task(name="access.notify_download_leak_suspected", **EMAIL_TASK_OPTIONS)
def notify_download_leak_suspected(bundle_id: int) -> None:
    """Tell the reviewers that the leak rule suspended a bundle (enqueued by ``bundle_leak_check``)."""
    from django.urls import reverse

    from access.models import DownloadBundle
    from access.notifications import absolute_url

    bundle = DownloadBundle.objects.select_related("grant__user", "grant__variant").filter(pk=bundle_id).first()
    if bundle is None or bundle.suspended_at is None:
        return
    email_send(
        to=[],
        bcc=reviewer_emails(excluding=bundle.grant.user),
        template="download_leak_suspected",
        # The suspension reason names the networks; the request that crossed the limit may not be logged yet.
        context={
            "bundle": bundle,
            "grant": bundle.grant,
            "url": absolute_url(reverse("review-grant-downloads", args=[bundle.grant_id])),
        },
    )
