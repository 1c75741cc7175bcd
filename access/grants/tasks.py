"""The grants' Celery tasks: the hourly expiry sweep, the daily expiry reminders and their email.
The email to a holder whose grant was revoked, suspended or reinstated is ``notify_grant_changed``
(in access.grants.notices, which the services import)."""

from __future__ import annotations

from celery import shared_task
from django.urls import reverse

from access.grants.models import Grant
from access.grants.notices import notify_grant_changed
from access.grants.services import grant_mark_reminded, grants_due_for_reminder
from access.grants.services import grants_expire_due as expire
from access.notifications.services import EMAIL_TASK_OPTIONS, absolute_url, email_send

__all__ = ["grants_expire_due", "grants_remind_expiring", "notify_grant_changed", "notify_grant_expiring"]


@shared_task(name="access.grants_expire_due", ignore_result=True, soft_time_limit=300, time_limit=360)
def grants_expire_due() -> int:
    return expire()


@shared_task(name="access.grants_remind_expiring", ignore_result=True, soft_time_limit=300, time_limit=360)
def grants_remind_expiring() -> int:
    """Claim each due reminder once, then hand the email to its own task, which
    retries on mail-server errors (a claimed reminder is never lost to one)."""
    claimed = 0
    for grant in grants_due_for_reminder():
        if grant_mark_reminded(grant=grant):
            notify_grant_expiring.delay(grant.pk)
            claimed += 1
    return claimed


@shared_task(name="access.notify_grant_expiring", **EMAIL_TASK_OPTIONS)
def notify_grant_expiring(grant_id: int) -> None:
    grant = Grant.objects.select_related("user", "variant").filter(pk=grant_id).first()
    if grant is None or grant.expires_at is None:
        return
    email_send(
        to=[grant.user.email],
        template="grant_expiring",
        context={"grant": grant, "url": absolute_url(reverse("grants"))},
    )
