"""The applicant's emails, as Celery tasks: request received (and, when reviewers want them at
once, the new-request and resubmission notices to reviewers). Thin: they take ids, load rows and
send; services enqueue them only after their transaction commits."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from access.notifications.services import (
    EMAIL_TASK_OPTIONS,
    email_send,
    request_status_url,
    review_url,
    reviewer_emails,
)
from access.requests.models import RequestStatus
from access.requests.selectors import access_request_for_email, estimated_decision_at, queue_position


@shared_task(name="access.notify_request_submitted", **EMAIL_TASK_OPTIONS)
def notify_request_submitted(request_id: int) -> None:
    access_request = access_request_for_email(request_id)
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
    access_request = access_request_for_email(request_id)
    if access_request is None or settings.REVIEWER_NOTIFICATIONS != "immediate":
        return
    assigned = access_request.assignee and access_request.assignee != access_request.applicant
    email_send(
        to=[access_request.assignee.email] if assigned else [],
        bcc=[] if assigned else reviewer_emails(excluding=access_request.applicant),
        template="reviewer_new_request",
        context={"request": access_request, "url": review_url(access_request), "resubmitted": True},
    )
