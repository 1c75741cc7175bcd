"""A reviewer's first login: why an authenticator app is required, setting it up, the recovery
codes with a Continue button, and back to the page they first wanted; no second password prompt
right after the login form took it.

Personas: a reviewer without an authenticator (the newcomer), a reviewer who has one.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY

from access.audit.models import AuditEvent
from tests.factories import TEST_PASSWORD
from tests.totp import totp_code_fresh

REQUIRED_URL = "/accounts/2fa/required/"
ENROL_URL = "/accounts/2fa/totp/activate/"
CODES_URL = "/accounts/2fa/recovery-codes/"
CONTINUE_URL = "/accounts/2fa/continue/"
QUEUE_URL = "/review/?status=submitted"


def _log_in_wanting(client, user, next_url: str):
    response = client.post("/accounts/login/", {"login": user.email, "password": TEST_PASSWORD, "next": next_url})
    assert response.status_code == 302, response.content[:500]
    return response


def test_new_reviewer_who_logs_in_is_told_why_an_authenticator_app_is_required(client, reviewer_without_mfa):
    response = _log_in_wanting(client, reviewer_without_mfa, QUEUE_URL)
    assert response["Location"] == QUEUE_URL

    response = client.get(QUEUE_URL)
    assert response["Location"] == REQUIRED_URL + "?next=%2Freview%2F%3Fstatus%3Dsubmitted"

    page = client.get(response["Location"]).content.decode()
    assert "Reviewers and administrators must log in with an authenticator app" in page
    assert "a stolen password alone must not be enough" in page
    assert f'href="{ENROL_URL}"' in page
    assert "Then you continue to the page you asked for." in page


@pytest.mark.django_db(transaction=True)
def test_new_reviewer_sets_up_the_app_without_a_second_password_and_lands_where_they_wanted(
    client, reviewer_without_mfa
):
    _log_in_wanting(client, reviewer_without_mfa, QUEUE_URL)
    client.get(REQUIRED_URL + "?next=%2Freview%2F%3Fstatus%3Dsubmitted")

    # The login form took the password seconds ago: the set-up page opens without asking again.
    response = client.get(ENROL_URL)
    assert response.status_code == 200
    assert "Step 2 of 3" in response.content.decode()
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(ENROL_URL, {"code": totp_code_fresh(secret)})
    assert response["Location"] == CODES_URL

    codes_page = client.get(CODES_URL)
    assert codes_page.status_code == 200
    page = codes_page.content.decode()
    assert "Step 3 of 3" in page
    assert f'href="{CONTINUE_URL}"' in page
    assert Authenticator.objects.filter(user=reviewer_without_mfa, type=Authenticator.Type.TOTP).exists()

    response = client.get(CONTINUE_URL)
    assert response["Location"] == QUEUE_URL
    assert client.get(QUEUE_URL).status_code == 200
    # The chain is over: the codes page no longer offers to continue anywhere.
    assert f'href="{CONTINUE_URL}"' not in client.get(CODES_URL).content.decode()


def test_setting_up_long_after_login_asks_for_the_password_and_says_why(client, reviewer_without_mfa):
    _log_in_wanting(client, reviewer_without_mfa, QUEUE_URL)

    with time_machine.travel(dt.timedelta(minutes=10)):
        response = client.get(ENROL_URL)
        assert response["Location"].startswith("/accounts/reauthenticate/")
        page = client.get(response["Location"]).content.decode()

    assert "Because your password was last entered more than a few minutes ago" in page


def test_reviewer_who_has_an_app_is_asked_for_the_password_before_changing_it(client, reviewer, login_with_totp):
    login_with_totp(client, reviewer)

    response = client.get("/accounts/2fa/recovery-codes/generate/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/reauthenticate/")


@pytest.mark.django_db(transaction=True)
def test_turning_the_new_app_off_right_after_setting_it_up_still_asks_for_the_password(
    client, reviewer_without_mfa
):
    # The login's password counts for the first set-up's steps only: someone at an unattended
    # browser cannot switch the reviewer's second factor off or make new codes without it.
    _log_in_wanting(client, reviewer_without_mfa, QUEUE_URL)
    client.get(ENROL_URL)
    client.post(ENROL_URL, {"code": totp_code_fresh(client.session[SECRET_SESSION_KEY])})
    assert Authenticator.objects.filter(user=reviewer_without_mfa, type=Authenticator.Type.TOTP).exists()

    for url in ("/accounts/2fa/totp/deactivate/", "/accounts/2fa/recovery-codes/generate/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/reauthenticate/"), url


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "javascript:alert(1)"])
def test_continue_never_leaves_the_portal(client, reviewer_without_mfa, next_url, login_with_password):
    login_with_password(client, reviewer_without_mfa)
    client.get(REQUIRED_URL, {"next": next_url})

    response = client.get(CONTINUE_URL)

    assert response["Location"] == "/"


def test_reviewer_who_already_has_an_app_is_not_asked_to_set_one_up(reviewer_client):
    response = reviewer_client.get(REQUIRED_URL, {"next": "/review/"})

    assert response["Location"] == "/review/"


def test_explanation_page_needs_a_login(client, db):
    response = client.get(REQUIRED_URL)

    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db(transaction=True)
def test_one_enrolment_is_audited_as_one_mfa_enabled_event(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)
    client.get(ENROL_URL)
    client.post(ENROL_URL, {"code": totp_code_fresh(client.session[SECRET_SESSION_KEY])})

    enabled = AuditEvent.objects.filter(action="mfa.enabled", actor=reviewer_without_mfa)
    assert enabled.count() == 1
    assert enabled.get().details == {"type": "totp"}
