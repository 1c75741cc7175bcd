"""Emails of the access workflow: sent by Celery tasks after the change commits,
rendered from templates as plain text with an HTML alternative.

Delivery is Django's locmem backend (pytest-django's ``mailoutbox``); the tasks
run in-process (see tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import re
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from access.catalog.models import ModelVariant
from access.notifications.services import email_send, reviewer_emails
from access.requests import tasks as requests_tasks
from access.requests.models import AccessRequest
from access.requests.services import access_request_resubmit, access_request_withdraw
from access.review import tasks as review_tasks
from access.review.services import (
    EMBARGO_REASON,
    access_request_approve,
    access_request_claim,
    access_request_reject,
    access_request_request_info,
)
from portal import roles
from tests.factories import UserFactory
from tests.helpers import html_of

SITE = "[Model Weights Portal]"


def _absolute(path: str) -> str:
    return "http://testserver.example" + path


@pytest.fixture(autouse=True)
def _portal_settings(settings):
    settings.PORTAL_SITE_NAME = "Model Weights Portal"
    settings.PORTAL_BASE_URL = "http://testserver.example"
    settings.DEFAULT_FROM_EMAIL = "portal@testserver.example"
    settings.REVIEWER_NOTIFICATIONS = "immediate"


def assert_well_formed(message) -> None:
    assert message.subject.startswith(SITE + " ")
    assert "\n" not in message.subject
    assert message.from_email == "portal@testserver.example"
    assert message.body.strip()
    html = html_of(message)
    assert html.lstrip().startswith("<!DOCTYPE html>")
    for part in (message.subject, message.body, html):
        assert "{{" not in part and "{%" not in part
        assert "None" not in part  # a missing context variable


def to_applicant(mailoutbox, email: str):
    return [message for message in mailoutbox if message.to == [email]]


def subjects(mailoutbox) -> list[str]:
    return [message.subject.removeprefix(SITE + " ") for message in mailoutbox]


# --- On submit ------------------------------------------------------------------------------------


def test_the_applicant_is_emailed_on_submit_with_reference_position_and_estimate(
    researcher, outsider, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, settings, submit
):
    settings.REVIEWER_NOTIFICATIONS = "digest"
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 1.0
    submit(outsider, full_name="Eve Example", affiliation="Elsewhere")  # one ahead in the queue
    frozen = timezone.now()

    with mock.patch("django.utils.timezone.now", return_value=frozen), django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher)

    (message,) = mailoutbox
    assert_well_formed(message)
    assert message.to == ["ada@uni.example.edu"]
    assert message.subject == f"{SITE} Request {access_request.reference} received"
    estimate = date_format(frozen + dt.timedelta(days=2), "j F Y")
    for part in (message.body, html_of(message)):
        assert "Hello Ada Lovelace," in part
        assert access_request.reference in part
        assert "number 2 in the review queue" in part
        assert f"we expect a decision by {estimate}" in part
        assert _absolute(reverse("request-detail", args=[access_request.pk])) in part


def test_nothing_is_sent_until_the_submit_commits(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    with django_capture_on_commit_callbacks() as callbacks:
        submit(researcher)

    assert mailoutbox == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert len(mailoutbox) == 2  # the applicant, then the reviewers


def test_a_refused_submit_sends_nothing(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError):
        submit(researcher, use_case="too short")

    assert mailoutbox == []


def test_reviewers_are_emailed_at_once_about_a_new_request(
    researcher,
    reviewer,
    admin_user,
    reviewer_without_mfa,
    llama_catalog,
    mailoutbox,
    django_capture_on_commit_callbacks,
    submit,
):
    UserFactory(email="gone.reviewer@lab.example.org", role=roles.REVIEWER, is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher, "llama-7b", country="GB")

    applicant_email, reviewers_email = mailoutbox
    assert applicant_email.to == [researcher.email]
    assert_well_formed(reviewers_email)
    assert sorted(reviewers_email.bcc) == sorted([reviewer.email, admin_user.email, reviewer_without_mfa.email])
    assert researcher.email not in reviewers_email.bcc and reviewers_email.to == []
    assert reviewers_email.subject == f"{SITE} New request {access_request.reference} from University of Example"
    review_link = _absolute(reverse("review-detail", args=[access_request.pk]))
    for part in (reviewers_email.body, html_of(reviewers_email)):
        assert "New research-access request from Ada Lovelace" in part
        assert "University of Example, Academic, United Kingdom" in part
        assert review_link in part


def test_in_digest_mode_reviewers_are_not_emailed_per_request(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, settings, submit
):
    settings.REVIEWER_NOTIFICATIONS = "digest"

    with django_capture_on_commit_callbacks(execute=True):
        submit(researcher)

    assert [message.to for message in mailoutbox] == [[researcher.email]]


def test_without_any_reviewer_only_the_applicant_is_emailed(
    researcher, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    assert reviewer_emails() == []

    with django_capture_on_commit_callbacks(execute=True):
        submit(researcher)

    assert [message.to for message in mailoutbox] == [[researcher.email]]


def test_a_request_rejected_by_policy_gets_the_receipt_then_the_decision_and_no_reviewer_is_bothered(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher, "llama-7b", country="IR")

    assert subjects(mailoutbox) == [
        f"Request {access_request.reference} received",
        f"Decision on request {access_request.reference}",
    ]
    receipt, decision = mailoutbox
    assert "in the review queue" not in receipt.body  # it never entered the queue
    assert decision.to == [researcher.email]
    assert f"Reason: {EMBARGO_REASON}" in decision.body
    assert EMBARGO_REASON in html_of(decision)


def test_a_request_approved_by_policy_gets_the_receipt_then_the_approval(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    ModelVariant.objects.filter(slug="llama-7b").update(auto_approve_email_domains=["uni.example.edu"])

    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher, "llama-7b")

    assert subjects(mailoutbox) == [
        f"Request {access_request.reference} received",
        f"Approved request {access_request.reference}",
    ]


# --- Request for more information -----------------------------------------------------------------


def test_the_applicant_is_emailed_the_reviewers_question(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher)
    question = "Which cluster will hold the weights?\nAnd who else can log in to it? <script>x</script>"

    with django_capture_on_commit_callbacks(execute=True):
        access_request_request_info(access_request=access_request, reviewer=reviewer, message=question)

    (message,) = mailoutbox
    assert_well_formed(message)
    assert message.to == [researcher.email]
    assert message.subject == f"{SITE} More information needed for {access_request.reference}"
    assert question in message.body
    html = html_of(message)
    assert "Which cluster will hold the weights?<br>And who else can log in to it?" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html
    assert _absolute(reverse("request-detail", args=[access_request.pk])) in html


def test_a_resubmission_is_announced_to_the_assigned_reviewer_only(
    researcher, reviewer, second_reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher)
    access_request_claim(access_request=access_request, reviewer=reviewer)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_resubmit(access_request=access_request, applicant=researcher, message="Ours.")

    (message,) = mailoutbox
    assert_well_formed(message)
    assert message.to == [reviewer.email]
    assert message.subject == f"{SITE} Resubmitted request {access_request.reference} from University of Example"
    assert "Ada Lovelace answered your questions and resubmitted" in message.body


def test_an_unassigned_resubmission_is_announced_to_all_reviewers(
    researcher, reviewer, second_reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_resubmit(access_request=access_request, applicant=researcher)

    (message,) = mailoutbox
    assert sorted(message.bcc) == sorted([reviewer.email, second_reviewer.email])


def test_in_digest_mode_a_resubmission_sends_no_email(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, settings, submit
):
    settings.REVIEWER_NOTIFICATIONS = "digest"
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_resubmit(access_request=access_request, applicant=researcher)

    assert mailoutbox == []


# --- Decisions ------------------------------------------------------------------------------------


def test_an_approval_email_lists_the_approved_models_and_links_to_the_license(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit, llama
):
    access_request = submit(researcher, "llama-7b", "llama-13b")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, reviewer=reviewer, variants=llama("llama-13b"))

    (message,) = mailoutbox
    assert_well_formed(message)
    assert message.to == [researcher.email]
    assert message.subject == f"{SITE} Approved request {access_request.reference}"
    grants_link = _absolute(reverse("grants"))
    assert "- LLaMA 13B\n" in message.body
    assert "LLaMA 7B" not in message.body  # declined, so not listed as approved
    assert grants_link in message.body
    html = html_of(message)
    assert "<li>LLaMA 13B</li>" in html
    assert "LLaMA 7B" not in html
    assert f'href="{grants_link}"' in html


def test_a_rejection_email_gives_the_reason(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher)
    reason = "The use case is commercial.\nApply again for research only & say so."

    with django_capture_on_commit_callbacks(execute=True):
        access_request_reject(access_request=access_request, reviewer=reviewer, reason=reason)

    (message,) = mailoutbox
    assert_well_formed(message)
    assert message.subject == f"{SITE} Decision on request {access_request.reference}"
    assert "was not approved" in message.body
    assert f"Reason: {reason}" in message.body
    assert "The use case is commercial.<br>Apply again for research only &amp; say so." in html_of(message)


def test_the_first_of_two_approvals_sends_no_decision_email(
    researcher, reviewer, second_reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher, "llama-65b")

    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, reviewer=reviewer)
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, reviewer=second_reviewer)
    assert subjects(mailoutbox) == [f"Approved request {access_request.reference}"]


def test_withdrawing_sends_no_email(
    researcher, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    access_request = submit(researcher)

    with django_capture_on_commit_callbacks(execute=True):
        access_request_withdraw(access_request=access_request, applicant=researcher)

    assert mailoutbox == []


# --- The tasks themselves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task",
    [
        requests_tasks.notify_request_submitted,
        requests_tasks.notify_reviewers_request_resubmitted,
        review_tasks.notify_info_requested,
        review_tasks.notify_decision,
    ],
)
def test_a_notification_for_a_request_that_no_longer_exists_sends_nothing(db, reviewer, mailoutbox, task):
    task.delay(987654)

    assert mailoutbox == []


def test_notification_tasks_retry_on_mail_server_errors_and_have_time_limits():
    for task in (requests_tasks.notify_request_submitted, review_tasks.notify_info_requested, review_tasks.notify_decision):
        assert OSError in task.autoretry_for
        assert task.max_retries == 5
        assert task.soft_time_limit < task.time_limit


def test_email_send_to_nobody_sends_nothing(db, mailoutbox):
    assert email_send(to=[], template="request_submitted", context={}) == 0
    assert mailoutbox == []


def test_applicant_input_is_escaped_in_every_html_email(
    reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    applicant = UserFactory(email="mallory@uni.example.edu")

    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(
            applicant, full_name="<img src=x onerror=alert(1)>", affiliation="<b>Evil</b> University"
        )
    with django_capture_on_commit_callbacks(execute=True):
        access_request_reject(access_request=access_request, reviewer=reviewer, reason="<i>No.</i>")

    assert len(mailoutbox) == 3
    for message in mailoutbox:
        assert_well_formed(message)
        html = html_of(message)
        assert "<img" not in html and "<b>Evil" not in html and "<i>No" not in html
        assert not re.search(r"<(?!/?(html|body|p|strong|ul|li|a|br|blockquote)\b)[a-z]", html.split(">", 1)[1])


def test_the_whole_loop_sends_each_email_once_with_text_and_html(
    researcher, reviewer, second_reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks, submit
):
    with django_capture_on_commit_callbacks(execute=True):
        access_request = submit(researcher, "llama-7b")
    with django_capture_on_commit_callbacks(execute=True):
        access_request_claim(access_request=access_request, reviewer=reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which cluster?")
    with django_capture_on_commit_callbacks(execute=True):
        access_request_resubmit(access_request=access_request, applicant=researcher, message="Ours.")
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(access_request=access_request, reviewer=second_reviewer)

    reference = AccessRequest.objects.get().reference
    assert [(message.subject.removeprefix(SITE + " "), sorted(message.to + message.bcc)) for message in mailoutbox] == [
        (f"Request {reference} received", [researcher.email]),
        (f"New request {reference} from University of Example", sorted([reviewer.email, second_reviewer.email])),
        (f"More information needed for {reference}", [researcher.email]),
        (f"Resubmitted request {reference} from University of Example", [reviewer.email]),
        (f"Approved request {reference}", [researcher.email]),
    ]
    for message in mailoutbox:
        assert_well_formed(message)
