"""The grants' scheduled jobs (``access.grants.tasks``): the hourly expiry of grants past their end
date and the reminder before a grant ends. The clock is mocked; emails go to Django's locmem
outbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants import tasks as grants_tasks
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_accept_license, grant_create, grant_revoke, grant_suspend
from tests.helpers import clock_at, html_of

SITE = "[Model Weights Portal]"


pytestmark = pytest.mark.usefixtures("scheduled_email_settings")


def _grant(user, actor, slug="llama-7b", *, days: float | None = None, accept: bool = False) -> Grant:
    expires_at = timezone.now() + dt.timedelta(days=days) if days is not None else None
    variant = ModelVariant.objects.get(slug=slug)
    grant = grant_create(user=user, variant=variant, actor=actor, reason="Collaborator.", expires_at=expires_at)
    if accept:
        grant_accept_license(grant=grant, user=user, license_version=license_current(grant.variant.family))
    return Grant.objects.get(pk=grant.pk)


# --- Expiry ---------------------------------------------------------------------------------------


def test_the_expiry_task_expires_due_grants_and_reports_how_many(researcher, outsider, reviewer, llama_catalog):
    due = _grant(researcher, reviewer, days=3, accept=True)
    not_yet = _grant(outsider, reviewer, days=30)

    assert grants_tasks.grants_expire_due.delay().get() == 0
    with clock_at(due.expires_at + dt.timedelta(minutes=5)):
        assert grants_tasks.grants_expire_due.delay().get() == 1
        assert grants_tasks.grants_expire_due.delay().get() == 0

    assert Grant.objects.get(pk=due.pk).status == GrantStatus.EXPIRED
    assert Grant.objects.get(pk=not_yet.pk).status == GrantStatus.LICENSE_REQUIRED
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_a_suspended_grant_past_its_end_date_is_expired_too(researcher, reviewer, llama_catalog):
    grant = _grant(researcher, reviewer, days=3, accept=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Investigating.")

    with clock_at(grant.expires_at + dt.timedelta(hours=1)):
        assert grants_tasks.grants_expire_due() == 1

    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.EXPIRED


# --- The reminder before a grant ends -------------------------------------------------------------


def test_the_holder_is_reminded_once_before_the_grant_ends(researcher, reviewer, llama_catalog, mailoutbox):
    grant = _grant(researcher, reviewer, days=10, accept=True)

    assert grants_tasks.grants_remind_expiring.delay().get() == 1
    assert grants_tasks.grants_remind_expiring.delay().get() == 0

    (message,) = mailoutbox
    ends = f"{grant.expires_at:%-d %B %Y}"
    assert message.to == [researcher.email]
    assert message.subject == f"{SITE} Your access to LLaMA 7B ends on {ends}"
    assert f"Your access to LLaMA 7B ends on {ends}" in message.body
    assert "http://testserver.example" + reverse("grants") in message.body
    assert "<strong>LLaMA 7B</strong>" in html_of(message)
    assert Grant.objects.get(pk=grant.pk).expiry_reminder_sent_at is not None
    event = AuditEvent.objects.get(action="grant.expiry_reminder_sent")
    assert (event.target_id, event.details) == (str(grant.pk), {"user": researcher.email})


def test_the_reminder_waits_until_the_end_date_is_within_the_reminder_window(
    researcher, reviewer, llama_catalog, mailoutbox
):
    grant = _grant(researcher, reviewer, days=30, accept=True)

    assert grants_tasks.grants_remind_expiring() == 0
    with clock_at(grant.expires_at - dt.timedelta(days=15)):
        assert grants_tasks.grants_remind_expiring() == 0
    with clock_at(grant.expires_at - dt.timedelta(days=13)):
        assert grants_tasks.grants_remind_expiring() == 1
    with clock_at(grant.expires_at - dt.timedelta(days=1)):
        assert grants_tasks.grants_remind_expiring() == 0

    assert len(mailoutbox) == 1


def test_the_reminder_window_is_a_setting(researcher, reviewer, llama_catalog, mailoutbox, settings):
    settings.GRANT_EXPIRY_REMINDER_DAYS = 3
    _grant(researcher, reviewer, days=10, accept=True)

    assert grants_tasks.grants_remind_expiring() == 0
    assert mailoutbox == []


def test_a_grant_still_waiting_for_the_license_is_reminded_too(researcher, reviewer, llama_catalog, mailoutbox):
    _grant(researcher, reviewer, days=5)

    assert grants_tasks.grants_remind_expiring() == 1


def test_no_reminder_for_grants_without_an_end_date_or_no_longer_live(
    researcher, outsider, reviewer, llama_catalog, mailoutbox
):
    _grant(researcher, reviewer, "llama-7b", accept=True)  # no end date
    revoked = _grant(researcher, reviewer, "llama-13b", days=5, accept=True)
    grant_revoke(grant=revoked, actor=reviewer, reason="Shared the weights.")
    suspended = _grant(outsider, reviewer, "llama-7b", days=5, accept=True)
    grant_suspend(grant=suspended, actor=reviewer, reason="Investigating.")
    ended = _grant(outsider, reviewer, "llama-13b", days=5)

    with clock_at(ended.expires_at + dt.timedelta(hours=1)):  # past the end: too late for a reminder
        assert grants_tasks.grants_remind_expiring() == 0

    assert grants_tasks.grants_remind_expiring() == 1  # only `ended`, which is still live and ends in 5 days
    assert [message.to for message in mailoutbox] == [[outsider.email]]


def test_each_holder_gets_their_own_reminder(researcher, outsider, reviewer, llama_catalog, mailoutbox):
    _grant(researcher, reviewer, "llama-7b", days=5, accept=True)
    _grant(researcher, reviewer, "llama-13b", days=6, accept=True)
    _grant(outsider, reviewer, "llama-7b", days=7)

    assert grants_tasks.grants_remind_expiring() == 3

    assert sorted(message.to[0] for message in mailoutbox) == sorted(
        [researcher.email, researcher.email, outsider.email]
    )
