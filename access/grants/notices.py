"""The email that tells a grant's holder a reviewer revoked, suspended or reinstated it, with the
reason and what the license asks of them now. Enqueued by the services once the change commits;
a module of its own because the services import it (``access.grants.tasks`` imports the services)."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.urls import reverse

from access.catalog.selectors import license_current
from access.grants.models import Grant
from access.grants.selectors import grant_effective_status
from access.notifications.services import EMAIL_TASK_OPTIONS, absolute_url, email_send

# The grant's status after each change, and the template that tells the holder about it.
NOTICE_TEMPLATES = {"revoked": "grant_revoked", "suspended": "grant_suspended", "reinstated": "grant_reinstated"}


def holder_name(grant: Grant) -> str:
    """The name the holder gave on the request, else the account's name, else the email."""
    if grant.request_id and grant.request.full_name.strip():
        return grant.request.full_name.strip()
    return grant.user.get_full_name().strip() or grant.user.email


def grant_notice_enqueue(grant: Grant, kind: str, reason: str) -> None:
    """Email the holder about ``kind`` (a key of NOTICE_TEMPLATES) once the transaction commits.
    The reason travels with the task: a later change of the grant must not rewrite this notice."""
    grant_id = grant.pk
    transaction.on_commit(lambda: notify_grant_changed.delay(grant_id, kind, reason))


@shared_task(name="access.notify_grant_changed", **EMAIL_TASK_OPTIONS)
def notify_grant_changed(grant_id: int, kind: str, reason: str = "") -> None:
    grant = Grant.objects.select_related("user", "variant__family", "request").filter(pk=grant_id).first()
    if grant is None or kind not in NOTICE_TEMPLATES:
        return
    license_version = license_current(grant.variant.family)
    email_send(
        to=[grant.user.email],
        template=NOTICE_TEMPLATES[kind],
        context={
            "grant": grant,
            # As enforced: a license that changed meanwhile, or an end date that passed, still holds.
            "effective_status": grant_effective_status(grant),
            "name": holder_name(grant),
            "reason": reason,
            "license": license_version,
            "license_url": absolute_url(reverse("license-detail", args=[license_version.pk]))
            if license_version
            else "",
            "url": absolute_url(reverse("grants")),
        },
    )
