"""The reviewers' daily digest (``access.review.tasks.reviewer_digest_send``): the requests waiting
for review, sent in digest mode only, to active reviewers. The clock is mocked; emails go to
Django's locmem outbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from access.requests.models import AccessRequest
from access.requests.services import access_request_resubmit
from access.review import tasks as review_tasks
from access.review.services import access_request_claim, access_request_reject, access_request_request_info
from portal import roles
from tests.factories import UserFactory
from tests.helpers import clock_at, html_of

SITE = "[Model Weights Portal]"


pytestmark = pytest.mark.usefixtures("scheduled_email_settings")


@pytest.fixture
def digest_mode(settings):
    settings.REVIEWER_NOTIFICATIONS = "digest"


def _age(access_request, days: float) -> None:
    AccessRequest.objects.filter(pk=access_request.pk).update(submitted_at=timezone.now() - dt.timedelta(days=days))


def test_the_digest_lists_the_requests_waiting_for_review(
    digest_mode, researcher, outsider, reviewer, admin_user, llama_catalog, mailoutbox, submit
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
    for part in (message.body, html_of(message)):
        assert f"the oldest, {old.reference}, since {old.submitted_at:%-d %B %Y}" in part
        assert f"{new.reference}: Ada Lovelace (University of Example)" in part
        assert "Eve Example" not in part  # waiting, but not new in the last day
        assert "Dan Decided" not in part and "Ann Asked" not in part
        assert "http://testserver.example" + reverse("review-queue") in part


def test_the_digest_names_no_new_request_when_only_old_ones_wait(
    digest_mode, outsider, reviewer, llama_catalog, mailoutbox, submit
):
    old = submit(outsider, full_name="Eve Example", affiliation="Elsewhere Institute")
    _age(old, 2)

    review_tasks.reviewer_digest_send()

    (message,) = mailoutbox
    assert message.subject == f"{SITE} 1 request waiting for review"
    assert "- none" in message.body
    assert "<li>none</li>" in html_of(message)


def test_a_resubmitted_request_waits_in_the_digest(
    digest_mode, researcher, reviewer, llama_catalog, mailoutbox, submit
):
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")
    access_request_resubmit(access_request=access_request, applicant=researcher)

    assert review_tasks.reviewer_digest_send() == 1
    assert "1 request waiting" in mailoutbox[0].subject


def test_no_digest_is_sent_when_nothing_waits(digest_mode, reviewer, llama_catalog, mailoutbox):
    assert review_tasks.reviewer_digest_send() == 0
    assert mailoutbox == []


def test_no_digest_is_sent_when_reviewers_are_notified_at_once(
    settings, researcher, reviewer, llama_catalog, mailoutbox, submit
):
    settings.REVIEWER_NOTIFICATIONS = "immediate"
    submit(researcher)

    assert review_tasks.reviewer_digest_send() == 0
    assert mailoutbox == []


def test_the_digest_goes_to_active_reviewers_only(digest_mode, researcher, reviewer, llama_catalog, mailoutbox, submit):
    UserFactory(email="gone@lab.example.org", role=roles.REVIEWER, is_active=False)
    submit(researcher)

    review_tasks.reviewer_digest_send()

    assert mailoutbox[0].bcc == [reviewer.email]


def test_the_digest_counts_new_requests_by_the_clock(
    digest_mode, researcher, reviewer, llama_catalog, mailoutbox, submit
):
    access_request = submit(researcher)

    with clock_at(timezone.now() + dt.timedelta(days=2)):
        review_tasks.reviewer_digest_send()

    assert access_request.reference in mailoutbox[0].body  # still the oldest waiting
    assert "- none" in mailoutbox[0].body  # but no longer new
