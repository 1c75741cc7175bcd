"""The workflow's Celery beat jobs: hourly expiry of grants, the reminder before a
grant ends, and the reviewers' daily digest. The clock is mocked; emails go to
Django's locmem outbox."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.selectors import license_current
from access.grants import tasks as grants_tasks
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_accept_license, grant_create, grant_revoke, grant_suspend
from access.requests.models import AccessRequest
from access.requests.services import access_request_resubmit
from access.review import tasks as review_tasks
from access.review.services import access_request_claim, access_request_reject, access_request_request_info
from portal import roles
from portal.celery import app
from tests.access.test_request_services import llama, submit
from tests.factories import UserFactory

SITE = "[Model Weights Portal]"


@pytest.fixture(autouse=True)
def _portal_settings(settings):
    settings.PORTAL_SITE_NAME = "Model Weights Portal"
    settings.PORTAL_BASE_URL = "http://testserver.example"
    settings.GRANT_EXPIRY_REMINDER_DAYS = 14


def _at(moment):
    """Run the block as if the clock showed ``moment``."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


def _grant(user, actor, slug="llama-7b", *, days: float | None = None, accept: bool = False) -> Grant:
    expires_at = timezone.now() + dt.timedelta(days=days) if days is not None else None
    grant = grant_create(user=user, variant=llama(slug)[0], actor=actor, reason="Collaborator.", expires_at=expires_at)
    if accept:
        grant_accept_license(grant=grant, user=user, license_version=license_current(grant.variant.family))
    return Grant.objects.get(pk=grant.pk)


def _html(message) -> str:
    (html,) = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    return html


# --- The beat schedule ----------------------------------------------------------------------------


def test_beat_runs_expiry_hourly_reminders_daily_and_the_digest_at_the_configured_hour():
    schedule = django_settings.CELERY_BEAT_SCHEDULE

    entries = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    assert entries["access.grants_expire_due"] == crontab(minute=5)
    assert entries["access.grants_remind_expiring"] == crontab(hour=7, minute=0)
    assert entries["access.reviewer_digest_send"] == crontab(hour=django_settings.REVIEWER_DIGEST_HOUR_UTC, minute=0)


def test_every_scheduled_task_is_registered_with_a_time_limit():
    app.loader.import_default_modules()
    for entry in django_settings.CELERY_BEAT_SCHEDULE.values():
        if not entry["task"].startswith("access."):
            continue
        task = app.tasks[entry["task"]]
        assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit


# --- Expiry ---------------------------------------------------------------------------------------


def test_the_expiry_task_expires_due_grants_and_reports_how_many(researcher, outsider, reviewer, llama_catalog):
    due = _grant(researcher, reviewer, days=3, accept=True)
    not_yet = _grant(outsider, reviewer, days=30)

    assert grants_tasks.grants_expire_due.delay().get() == 0
    with _at(due.expires_at + dt.timedelta(minutes=5)):
        assert grants_tasks.grants_expire_due.delay().get() == 1
        assert grants_tasks.grants_expire_due.delay().get() == 0

    assert Grant.objects.get(pk=due.pk).status == GrantStatus.EXPIRED
    assert Grant.objects.get(pk=not_yet.pk).status == GrantStatus.LICENSE_REQUIRED
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_a_suspended_grant_past_its_end_date_is_expired_too(researcher, reviewer, llama_catalog):
    grant = _grant(researcher, reviewer, days=3, accept=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Investigating.")

    with _at(grant.expires_at + dt.timedelta(hours=1)):
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
    assert "<strong>LLaMA 7B</strong>" in _html(message)
    assert Grant.objects.get(pk=grant.pk).expiry_reminder_sent_at is not None
    event = AuditEvent.objects.get(action="grant.expiry_reminder_sent")
    assert (event.target_id, event.details) == (str(grant.pk), {"user": researcher.email})


def test_the_reminder_waits_until_the_end_date_is_within_the_reminder_window(
    researcher, reviewer, llama_catalog, mailoutbox
):
    grant = _grant(researcher, reviewer, days=30, accept=True)

    assert grants_tasks.grants_remind_expiring() == 0
    with _at(grant.expires_at - dt.timedelta(days=15)):
        assert grants_tasks.grants_remind_expiring() == 0
    with _at(grant.expires_at - dt.timedelta(days=13)):
        assert grants_tasks.grants_remind_expiring() == 1
    with _at(grant.expires_at - dt.timedelta(days=1)):
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

    with _at(ended.expires_at + dt.timedelta(hours=1)):  # past the end: too late for a reminder
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


# --- The reviewers' daily digest ------------------------------------------------------------------


@pytest.fixture
def digest_mode(settings):
    settings.REVIEWER_NOTIFICATIONS = "digest"


def _age(access_request, days: float) -> None:
    AccessRequest.objects.filter(pk=access_request.pk).update(submitted_at=timezone.now() - dt.timedelta(days=days))


def test_the_digest_lists_the_requests_waiting_for_review(
    digest_mode, researcher, outsider, reviewer, admin_user, llama_catalog, mailoutbox
):
    old = submit(outsider, full_name="Eve Example", affiliation="Elsewhere Institute")
    _age(old, 3)
    new = submit(researcher)
    access_request_claim(access_request=new, reviewer=reviewer)  # in review still waits for a decision
    decided = submit(UserFactory(), full_name="Dan Decided", affiliation="Decided University")
    access_request_reject(access_request=decided, reviewer=reviewer, reason="Not research.")
    asked = submit(UserFactory(), full_name="Ann Asked", affiliation="Asked University")
    access_request_request_info(access_request=asked, reviewer=reviewer, message="Which cluster?")

    assert review_tasks.reviewer_digest_send.delay().get() == 1

    (message,) = mailoutbox
    assert sorted(message.bcc) == sorted([reviewer.email, admin_user.email])
    assert message.subject == f"{SITE} 2 requests waiting for review"
    old.refresh_from_db()
    for part in (message.body, _html(message)):
        assert f"the oldest, {old.reference}, since {old.submitted_at:%-d %B %Y}" in part
        assert f"{new.reference}: Ada Lovelace (University of Example)" in part
        assert "Eve Example" not in part  # waiting, but not new in the last day
        assert "Dan Decided" not in part and "Ann Asked" not in part
        assert "http://testserver.example" + reverse("review-queue") in part


def test_the_digest_names_no_new_request_when_only_old_ones_wait(
    digest_mode, outsider, reviewer, llama_catalog, mailoutbox
):
    old = submit(outsider, full_name="Eve Example", affiliation="Elsewhere Institute")
    _age(old, 2)

    review_tasks.reviewer_digest_send()

    (message,) = mailoutbox
    assert message.subject == f"{SITE} 1 request waiting for review"
    assert "- none" in message.body
    assert "<li>none</li>" in _html(message)


def test_a_resubmitted_request_waits_in_the_digest(digest_mode, researcher, reviewer, llama_catalog, mailoutbox):
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")
    access_request_resubmit(access_request=access_request, applicant=researcher)

    assert review_tasks.reviewer_digest_send() == 1
    assert "1 request waiting" in mailoutbox[0].subject


def test_no_digest_is_sent_when_nothing_waits(digest_mode, reviewer, llama_catalog, mailoutbox):
    assert review_tasks.reviewer_digest_send() == 0
    assert mailoutbox == []


def test_no_digest_is_sent_when_reviewers_are_notified_at_once(
    settings, researcher, reviewer, llama_catalog, mailoutbox
):
    settings.REVIEWER_NOTIFICATIONS = "immediate"
    submit(researcher)

    assert review_tasks.reviewer_digest_send() == 0
    assert mailoutbox == []


def test_the_digest_goes_to_active_reviewers_only(digest_mode, researcher, reviewer, llama_catalog, mailoutbox):
    UserFactory(email="gone@lab.example.org", role=roles.REVIEWER, is_active=False)
    submit(researcher)

    review_tasks.reviewer_digest_send()

    assert mailoutbox[0].bcc == [reviewer.email]


def test_the_digest_counts_new_requests_by_the_clock(digest_mode, researcher, reviewer, llama_catalog, mailoutbox):
    access_request = submit(researcher)

    with _at(timezone.now() + dt.timedelta(days=2)):
        review_tasks.reviewer_digest_send()

    assert access_request.reference in mailoutbox[0].body  # still the oldest waiting
    assert "- none" in mailoutbox[0].body  # but no longer new
