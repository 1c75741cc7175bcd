"""Accounts: sign-up with email verification, login, logout, password reset, the
account page, login rate limits, and the audit events all of these leave.

Personas: a verified researcher, an outsider, a newcomer who signs up here.
Only email delivery (Django's outbox) and the clock are stood in for.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from unittest import mock

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail
from django.test import Client

from access.audit.models import AuditEvent
from portal import roles
from portal.models import User
from tests.factories import TEST_PASSWORD, UserFactory

NEWCOMER_EMAIL = "newcomer@uni.example.edu"
NEW_PASSWORD = "a-brand-new-passphrase-9"
LOCKED_MESSAGE = "Too many failed login attempts"


def _link_in(message, path_prefix: str) -> str:
    """The path of the first link in an email that starts with path_prefix (links in emails are
    built from PORTAL_BASE_URL, whatever host the request named)."""
    base = re.escape(settings.PORTAL_BASE_URL.rstrip("/"))
    match = re.search(base + "(" + re.escape(path_prefix) + r"\S*)", message.body)
    assert match, f"no {path_prefix} link in: {message.body}"
    return match.group(1)


def _new_password(password: str) -> dict:
    return {"password1": password, "password2": password}


def _sign_up(client, email: str = NEWCOMER_EMAIL, password: str = TEST_PASSWORD):
    return client.post("/accounts/signup/", {"email": email, "password1": password, "password2": password})


def _is_logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _failed_login(client, email: str, **extra):
    response = client.post("/accounts/login/", {"login": email, "password": "not-the-password"}, **extra)
    assert response.status_code == 200
    return response


# --- Sign-up and email verification ------------------------------------------------


def test_sign_up_sends_a_verification_email_and_does_not_log_in(client, db):
    response = _sign_up(client)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert not _is_logged_in(client)
    user = User.objects.get(email=NEWCOMER_EMAIL)
    assert EmailAddress.objects.get(user=user).verified is False
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [NEWCOMER_EMAIL]
    assert _link_in(mail.outbox[0], "/accounts/confirm-email/")


def test_sign_up_gives_the_researcher_role_and_nothing_more(client, db):
    _sign_up(client)

    user = User.objects.get(email=NEWCOMER_EMAIL)
    assert set(user.groups.values_list("name", flat=True)) == {roles.RESEARCHER}
    assert roles.user_primary_role(user) == roles.RESEARCHER
    assert not user.is_staff and not user.is_superuser
    assert user.get_all_permissions() == set()


def test_sign_up_writes_an_audit_event(client, db):
    _sign_up(client)

    user = User.objects.get(email=NEWCOMER_EMAIL)
    event = AuditEvent.objects.get(action="user.signed_up")
    assert event.actor == user
    assert event.target_id == str(user.pk)
    assert event.ip_address == "127.0.0.1"


def test_sign_up_with_a_weak_password_creates_no_account(client, db):
    response = _sign_up(client, password="short")

    assert response.status_code == 200
    assert "too short" in response.content.decode()
    assert not User.objects.filter(email=NEWCOMER_EMAIL).exists()
    assert mail.outbox == []


def test_sign_up_with_a_taken_email_creates_no_second_account(client, researcher):
    _sign_up(client, email=researcher.email.upper())

    assert User.objects.filter(email__iexact=researcher.email).count() == 1
    assert not _is_logged_in(client)


def test_login_before_verifying_is_refused_and_sends_a_verification_email(client, db):
    unverified = UserFactory(email="unverified@uni.example.edu", verified_email=False)

    response = client.post("/accounts/login/", {"login": unverified.email, "password": TEST_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert not _is_logged_in(client)
    assert client.get("/account/").status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [unverified.email]
    assert _link_in(mail.outbox[0], "/accounts/confirm-email/")


def test_login_right_after_sign_up_is_refused_until_the_email_is_verified(client, db):
    _sign_up(client)

    response = client.post("/accounts/login/", {"login": NEWCOMER_EMAIL, "password": TEST_PASSWORD})

    assert response["Location"] == "/accounts/confirm-email/"
    assert not _is_logged_in(client)


def test_verifying_the_email_then_logging_in_works(client, db):
    _sign_up(client)
    link = _link_in(mail.outbox[0], "/accounts/confirm-email/")

    assert client.get(link).status_code == 200  # a page to confirm on, nothing changes on GET
    assert EmailAddress.objects.get(email=NEWCOMER_EMAIL).verified is False
    response = client.post(link)

    assert response.status_code == 302
    assert EmailAddress.objects.get(email=NEWCOMER_EMAIL).verified is True
    assert not _is_logged_in(client)  # confirming does not log in by itself
    response = client.post("/accounts/login/", {"login": NEWCOMER_EMAIL, "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _is_logged_in(client)
    assert client.get("/account/").status_code == 200


def test_verifying_the_email_writes_an_audit_event(client, db):
    _sign_up(client)
    client.post(_link_in(mail.outbox[0], "/accounts/confirm-email/"))

    user = User.objects.get(email=NEWCOMER_EMAIL)
    event = AuditEvent.objects.get(action="user.email_verified")
    assert event.actor == user
    assert event.details == {"email": NEWCOMER_EMAIL}


def test_a_tampered_verification_link_verifies_nothing(client, db):
    _sign_up(client)
    link = _link_in(mail.outbox[0], "/accounts/confirm-email/")

    client.post(link.rstrip("/") + "x/")

    assert EmailAddress.objects.get(email=NEWCOMER_EMAIL).verified is False


# --- Login, logout -------------------------------------------------------------------


def test_logging_in_writes_an_audit_event(client, researcher, login_with_password):
    login_with_password(client, researcher)

    event = AuditEvent.objects.get(action="user.logged_in")
    assert event.actor == researcher
    assert event.actor_label == researcher.email
    assert event.ip_address == "127.0.0.1"


def test_failed_login_is_refused_and_audited_without_an_actor(client, researcher):
    response = _failed_login(client, researcher.email)

    assert not _is_logged_in(client)
    assert "not correct" in response.content.decode()
    event = AuditEvent.objects.get(action="user.login_failed")
    assert event.actor is None
    assert event.actor_label == "system"
    assert event.details == {"email": researcher.email}
    assert event.ip_address == "127.0.0.1"
    assert not AuditEvent.objects.filter(action="user.logged_in").exists()


def test_failed_login_for_an_unknown_email_is_audited_too(client, db):
    _failed_login(client, "nobody@nowhere.example.com")

    event = AuditEvent.objects.get(action="user.login_failed")
    assert event.details == {"email": "nobody@nowhere.example.com"}


def test_logout_ends_the_session_and_is_audited(researcher_client, researcher):
    response = researcher_client.post("/accounts/logout/")

    assert response.status_code == 302
    assert not _is_logged_in(researcher_client)
    assert researcher_client.get("/account/").status_code == 302
    event = AuditEvent.objects.get(action="user.logged_out")
    assert event.actor == researcher


def test_logout_by_get_only_asks_for_confirmation(researcher_client):
    # A link or an <img> elsewhere must not be able to log people out.
    response = researcher_client.get("/accounts/logout/")

    assert response.status_code == 200
    assert _is_logged_in(researcher_client)
    assert not AuditEvent.objects.filter(action="user.logged_out").exists()


# --- Password reset ------------------------------------------------------------------


def test_password_reset_sends_an_email_whose_link_sets_a_new_password(client, researcher):
    response = client.post("/accounts/password/reset/", {"email": researcher.email})

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [researcher.email]
    link = _link_in(mail.outbox[0], "/accounts/password/reset/key/")

    response = client.get(link)  # moves the key out of the URL into the session
    assert response.status_code == 302
    form_url = response["Location"]
    response = client.post(form_url, _new_password(NEW_PASSWORD))

    assert response.status_code == 302
    researcher.refresh_from_db()
    assert researcher.check_password(NEW_PASSWORD)
    assert not researcher.check_password(TEST_PASSWORD)
    assert AuditEvent.objects.get(action="user.password_reset").actor == researcher


def test_password_reset_link_works_only_once(client, researcher):
    client.post("/accounts/password/reset/", {"email": researcher.email})
    link = _link_in(mail.outbox[0], "/accounts/password/reset/key/")
    form_url = client.get(link)["Location"]
    client.post(form_url, _new_password(NEW_PASSWORD))

    response = Client().get(link)  # e.g. someone who found the old email later

    assert response.status_code == 200
    assert "invalid" in response.content.decode().lower()
    assert 'name="password1"' not in response.content.decode()
    researcher.refresh_from_db()
    assert researcher.check_password(NEW_PASSWORD)


def test_password_reset_for_an_unknown_email_sends_no_reset_link(client, db):
    client.post("/accounts/password/reset/", {"email": "nobody@nowhere.example.com"})

    assert not any("/accounts/password/reset/key/" in message.body for message in mail.outbox)


def test_old_password_stops_working_after_a_reset(client, researcher):
    client.post("/accounts/password/reset/", {"email": researcher.email})
    form_url = client.get(_link_in(mail.outbox[0], "/accounts/password/reset/key/"))["Location"]
    client.post(form_url, _new_password(NEW_PASSWORD))

    response = client.post("/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD})
    assert response.status_code == 200
    assert not _is_logged_in(client)
    response = client.post("/accounts/login/", {"login": researcher.email, "password": NEW_PASSWORD})
    assert response.status_code == 302
    assert _is_logged_in(client)


def test_changing_the_password_works_and_is_audited(researcher_client, researcher):
    response = researcher_client.post(
        "/accounts/password/change/",
        {"oldpassword": TEST_PASSWORD, **_new_password(NEW_PASSWORD)},
    )

    assert response.status_code == 302
    researcher.refresh_from_db()
    assert researcher.check_password(NEW_PASSWORD)
    assert _is_logged_in(researcher_client)  # ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE is off
    assert AuditEvent.objects.get(action="user.password_changed").actor == researcher


def test_changing_the_password_needs_the_old_one(researcher_client, researcher):
    response = researcher_client.post(
        "/accounts/password/change/",
        {"oldpassword": "a-wrong-guess-123", **_new_password(NEW_PASSWORD)},
    )

    assert response.status_code == 200
    researcher.refresh_from_db()
    assert researcher.check_password(TEST_PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_changed").exists()


# --- The account page ----------------------------------------------------------------


def test_account_page_sends_anonymous_visitors_to_login(client, db):
    response = client.get("/account/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/account/"


def test_account_page_rejects_post(researcher_client):
    response = researcher_client.post("/account/")

    assert response.status_code == 405


def test_account_page_shows_email_role_and_mfa_off_for_a_researcher(researcher_client, researcher):
    response = researcher_client.get("/account/")

    assert response.status_code == 200
    page = response.content.decode()
    assert researcher.email in page
    assert 'class="badge ok">verified' in page
    assert re.search(r'data-testid="role">\s*researcher\s*<', page)
    assert 'class="badge warn">off' in page
    assert "Protect your account with an authenticator app" in page


def test_account_page_shows_role_and_mfa_on_for_a_reviewer(reviewer_client, reviewer):
    page = reviewer_client.get("/account/").content.decode()

    assert reviewer.email in page
    assert re.search(r'data-testid="role">\s*reviewer\s*<', page)
    assert 'class="badge ok">on' in page
    assert "This session was verified with it." in page


def test_account_page_shows_another_users_details_to_nobody(researcher_client, outsider):
    page = researcher_client.get("/account/").content.decode()

    assert outsider.email not in page


# --- Login rate limits ---------------------------------------------------------------


def test_right_password_still_works_one_failure_below_the_account_limit(client, researcher, login_with_password):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 1):
        _failed_login(client, researcher.email)

    login_with_password(client, researcher)

    assert _is_logged_in(client)


def test_account_is_locked_after_too_many_failed_logins_even_for_the_right_password(client, researcher):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _failed_login(client, researcher.email)

    response = client.post("/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD})

    assert response.status_code == 200
    assert LOCKED_MESSAGE in response.content.decode()
    assert not _is_logged_in(client)
    assert not AuditEvent.objects.filter(action="user.logged_in").exists()


def test_account_lock_ignores_the_case_of_the_email(client, researcher):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _failed_login(client, researcher.email.upper())

    response = client.post("/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD})

    assert LOCKED_MESSAGE in response.content.decode()


def test_locking_one_account_leaves_other_accounts_alone(client, researcher, outsider, login_with_password):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _failed_login(client, researcher.email)

    login_with_password(client, outsider)

    assert client.session["_auth_user_id"] == str(outsider.pk)


def test_account_lock_ends_after_the_lockout_window(client, researcher, login_with_password):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _failed_login(client, researcher.email)
    later = time.time() + settings.LOGIN_LOCKOUT_SECONDS + 1
    # Only the rate limiter's clock moves; sessions, TOTP and the cache keep real time.
    clock = SimpleNamespace(time=lambda: later, monotonic=time.monotonic, sleep=time.sleep)

    with mock.patch("allauth.core.internal.ratelimit.time", clock):
        login_with_password(client, researcher)

    assert _is_logged_in(client)


def test_many_failed_logins_from_one_ip_block_that_ip(client, researcher):
    attacker_ip = "203.0.113.7"
    for n in range(settings.LOGIN_FAILURES_PER_IP_PER_MINUTE):
        _failed_login(client, f"guess{n}@uni.example.edu", REMOTE_ADDR=attacker_ip)

    response = client.post(
        "/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD}, REMOTE_ADDR=attacker_ip
    )

    assert response.status_code == 200
    assert LOCKED_MESSAGE in response.content.decode()
    assert not _is_logged_in(client)


def test_blocking_one_ip_leaves_other_ips_alone(client, researcher, login_with_password):
    for n in range(settings.LOGIN_FAILURES_PER_IP_PER_MINUTE):
        _failed_login(client, f"guess{n}@uni.example.edu", REMOTE_ADDR="203.0.113.7")

    login_with_password(client, researcher)  # from the test client's own 127.0.0.1

    assert _is_logged_in(client)


def test_successful_logins_do_not_use_up_the_ip_limit(client, researcher, login_with_password):
    for _ in range(settings.LOGIN_FAILURES_PER_IP_PER_MINUTE + 2):
        login_with_password(client, researcher)
        client.post("/accounts/logout/")

    login_with_password(client, researcher)

    assert _is_logged_in(client)


def test_login_limits_come_from_the_named_settings(db):
    # allauth reads ACCOUNT_RATE_LIMITS at call time; the tests above rely on it
    # holding exactly these settings.
    from allauth.account import app_settings

    assert app_settings.RATE_LIMITS["login_failed"] == (
        f"{settings.LOGIN_FAILURES_PER_IP_PER_MINUTE}/m/ip,"
        f"{settings.LOGIN_FAILURES_PER_ACCOUNT}/{settings.LOGIN_LOCKOUT_SECONDS}s/key"
    )
