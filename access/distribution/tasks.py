"""The distribution's Celery tasks: the leak alert email to reviewers, and a recipient's copy's checksums."""

from __future__ import annotations

from celery import shared_task
from django.urls import reverse

from access.distribution.models import DownloadBundle
from access.notifications.services import EMAIL_TASK_OPTIONS, absolute_url, email_send, reviewer_emails


@shared_task(name="access.notify_download_leak_suspected", **EMAIL_TASK_OPTIONS)
def notify_download_leak_suspected(bundle_id: int) -> None:
    """Tell the reviewers that the leak rule suspended a bundle (enqueued by ``bundle_leak_check``)."""
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


@shared_task(name="access.weight_copy_prepare", acks_late=True, ignore_result=True)  # fingerprints.PREPARE_TASK
def weight_copy_prepare_task(copy_id: int) -> None:
    """Compute a recipient's marked copy's checksums (enqueued when links are created)."""
    from access.distribution.fingerprints import weight_copy_prepare

    weight_copy_prepare(copy_id)
