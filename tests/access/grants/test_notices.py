"""The holder hears about it: revoking, suspending and reinstating a grant emails the researcher,
once the change commits, with the reason and what the license asks of them now. Delivery is
Django's locmem outbox; the task runs in-process."""

from __future__ import annotations

import pytest
from django.urls import reverse

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.catalog.services import license_publish
from access.grants.models import GrantStatus
from access.grants.services import grant_accept_license, grant_reinstate, grant_revoke, grant_suspend
from access.review.services import access_request_approve
from portal.errors import StateConflict
from tests.factories import UserFactory
from tests.helpers import html_of

SITE = "[Model Weights Portal]"

pytestmark = pytest.mark.usefixtures("scheduled_email_settings")


@pytest.fixture
def approved_grant(researcher, reviewer, llama_catalog, submit):
    """Ada's llama-7b grant from an approved request (she gave her name on it), license accepted."""
    access_request = access_request_approve(access_request=submit(researcher, "llama-7b"), reviewer=reviewer)
    grant = access_request.grants.get()
    return grant_accept_license(grant=grant, user=researcher, license_version=license_current(llama_catalog))


def _parts(message) -> tuple[str, str]:
    return message.body, html_of(message)


def test_revoking_emails_the_researcher_the_reason_and_that_every_copy_must_be_deleted(
    approved_grant, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    mailoutbox.clear()  # the approval's email
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=approved_grant, actor=reviewer, reason="Weights found on a public file share.")

    (message,) = mailoutbox
    assert message.to == ["ada@uni.example.edu"]
    assert message.subject == f"{SITE} Your access to LLaMA 7B was revoked"
    license_version = license_current(approved_grant.variant.family)
    license_url = "http://testserver.example" + reverse("license-detail", args=[license_version.pk])
    for part in _parts(message):
        assert "Hello Ada Lovelace," in part
        assert "Reason: Weights found on a public file share." in part
        assert "Stop using LLaMA 7B at once." in part
        assert "Delete every copy of its weights" in part
        assert "copies made by colleagues" in part
        assert license_url in part
        assert "http://testserver.example/grants/" in part
        assert "New requests from you will not be approved" not in part


def test_a_revocation_that_blocks_new_requests_says_so(
    live_grant, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(grant=live_grant, actor=reviewer, reason="Broke the license.", block_new_requests=True)

    (message,) = mailoutbox
    assert "New requests from you will not be approved." in message.body
    # A grant made without a request: the account has no name, so the greeting uses the address.
    assert "Hello ada@uni.example.edu," in message.body


def test_suspending_emails_the_reason_and_to_stop_using_the_weights_until_reinstated(
    approved_grant, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        grant_suspend(grant=approved_grant, actor=reviewer, reason="Links used from 40 networks.")

    (message,) = mailoutbox
    assert message.to == ["ada@uni.example.edu"]
    assert message.subject == f"{SITE} Your access to LLaMA 7B is suspended"
    for part in _parts(message):
        assert "Reason: Links used from 40 networks." in part
        assert "Stop using LLaMA 7B until a reviewer reinstates your access." in part
        assert "Downloads and the sandbox are off" in part
        assert "Delete every copy" not in part  # that is for a revocation

    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        grant_reinstate(grant=approved_grant, actor=reviewer, reason="Explained: a CI cluster.")

    (back,) = mailoutbox
    assert back.subject == f"{SITE} Your access to LLaMA 7B is back"
    for part in _parts(back):
        assert "Note from the reviewer: Explained: a CI cluster." in part
        assert "You can use the weights again" in part


def test_a_grant_reinstated_before_its_license_was_accepted_asks_for_the_license(
    live_grant, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        grant_suspend(grant=live_grant, actor=reviewer, reason="Checking the affiliation.")
        grant_reinstate(grant=live_grant, actor=reviewer)

    assert [m.subject.removeprefix(SITE + " ") for m in mailoutbox] == [
        "Your access to LLaMA 7B is suspended",
        "Your access to LLaMA 7B is back",
    ]
    live_grant.refresh_from_db()
    assert live_grant.status == GrantStatus.LICENSE_REQUIRED
    assert "Accept the current license on your access page" in mailoutbox[1].body
    assert "Note from the reviewer" not in mailoutbox[1].body


def test_a_grant_reinstated_after_the_license_changed_asks_for_the_new_license_not_says_it_works(
    approved_grant, reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        grant_suspend(grant=approved_grant, actor=reviewer, reason="Checking the affiliation.")
    license_publish(family=llama_catalog, version="2.0", title="LLaMA License 2.0", text="# New terms\n\nRead them.")
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        grant_reinstate(grant=approved_grant, actor=reviewer, reason="Affiliation confirmed.")

    (back,) = mailoutbox
    for part in _parts(back):
        assert "Accept the current license on your access page" in part
        assert "You can use the weights again" not in part


def test_nothing_is_sent_until_the_revocation_commits_nor_for_a_refused_one(
    live_grant, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        grant_revoke(grant=live_grant, actor=reviewer, reason="Broke the license.")
    assert mailoutbox == [] and len(callbacks) == 1

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(StateConflict):
        grant_suspend(grant=live_grant, actor=reviewer, reason="Too late: it is revoked.")
    assert mailoutbox == []


def test_the_email_greets_the_holder_by_the_account_name_when_there_is_no_request(
    reviewer, llama_catalog, mailoutbox, django_capture_on_commit_callbacks
):
    from access.grants.services import grant_create

    holder = UserFactory(email="grace@navy.example.mil", first_name="Grace", last_name="Hopper")
    grant = grant_create(
        user=holder, variant=ModelVariant.objects.get(slug="llama-13b"), actor=reviewer, reason="Co-author."
    )
    with django_capture_on_commit_callbacks(execute=True):
        grant_suspend(grant=grant, actor=reviewer, reason="Checking.")

    (message,) = mailoutbox
    assert message.to == ["grace@navy.example.mil"]
    assert "Hello Grace Hopper," in message.body and "Hello Grace Hopper," in html_of(message)
