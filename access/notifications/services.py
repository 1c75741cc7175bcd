"""Email delivery: messages rendered from templates (plain text and HTML), the reviewers'
addresses, the absolute links emails carry, and the retry policy every email task shares.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from portal.models import User

EMAIL_TASK_OPTIONS = {
    "ignore_result": True,
    "autoretry_for": (OSError,),  # SMTP hiccups: retry with back-off
    "retry_backoff": 30,
    "max_retries": 5,
    "soft_time_limit": 60,
    "time_limit": 90,
}


def absolute_url(path: str) -> str:
    return settings.PORTAL_BASE_URL.rstrip("/") + path


def email_send(*, to: list[str], template: str, context: dict, bcc: list[str] | None = None) -> int:
    """Send ``templates/access/email/<template>.{subject,txt,html}`` to the given addresses.

    Lists of reviewers go in ``bcc``, so no reviewer's address reaches another."""
    if not to and not bcc:
        return 0
    context = {"site_name": settings.PORTAL_SITE_NAME, "base_url": settings.PORTAL_BASE_URL, **context}
    # Subjects carry user-typed names: one line, or the mail library refuses the header.
    subject = " ".join(render_to_string(f"access/email/{template}.subject.txt", context).split())
    text = render_to_string(f"access/email/{template}.txt", context)
    html = render_to_string(f"access/email/{template}.html", context)
    message = EmailMultiAlternatives(
        subject=f"[{settings.PORTAL_SITE_NAME}] {subject}",
        body=text,
        to=to,
        bcc=bcc or [],
        from_email=settings.DEFAULT_FROM_EMAIL,
    )
    message.attach_alternative(html, "text/html")
    return message.send()


def reviewer_emails(*, excluding: User | None = None) -> list[str]:
    """Active reviewers' addresses, without the applicant when a reviewer applied themselves."""
    reviewers = User.objects.filter(is_active=True, groups__permissions__codename="review_access")
    if excluding is not None:
        reviewers = reviewers.exclude(pk=excluding.pk)
    return list(reviewers.distinct().values_list("email", flat=True))


def request_status_url(access_request) -> str:
    return absolute_url(reverse("request-detail", args=[access_request.pk]))


def review_url(access_request) -> str:
    return absolute_url(reverse("review-detail", args=[access_request.pk]))


