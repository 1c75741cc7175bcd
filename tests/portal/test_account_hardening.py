"""Accounts under attack: what a changed password, a reset or an operator's MFA reset leaves
behind (no API token, no other session), where the links in allauth's emails point (always
PORTAL_BASE_URL), and failed logins that lock only the address they come from.

Personas: a reviewer who logs in with a TOTP code (or a recovery code, for a second session in
the same test: a TOTP code is accepted once), an attacker at another address, a researcher.
Only email delivery (Django's outbox) and the rate limiter's clock are stood in for.
"""

from __future__ import annotations

import re
import time
from io import StringIO
from types import SimpleNamespace
from unittest import mock

import pytest
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from django.core import mail
from django.core.management import call_command
from django.test import Client

from access.audit.models import AuditEvent
from tests.factories import TEST_PASSWORD

NEW_PASSWORD = "a-brand-new-passphrase-9"
REVIEWER_ADDRESS = "198.51.100.23"
ATTACKER_ADDRESS = "203.0.113.7"
PROXY_ADDRESS = "10.0.0.2"
LOCKED_HERE = "Too many failed login attempts for this account from your network"
SLOWED_DOWN = "Logins to it from networks it has not logged in from before are slowed down"


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _reaches_review_queue(client) -> bool:
    return client.get("/review/").status_code == 200


def _login_with_recovery_code(client, user, login_with_password) -> None:
    """A second MFA-verified session in one test: the TOTP code of the first is spent."""
    code = RecoveryCodes.activate(user).generate_codes()[0]
    login_with_password(client, user)
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302, response.content[:500]


def _reset_link(message) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", message.body)
    assert match, message.body
    return match.group(1)


def _reset_password(client, user, password: str = NEW_PASSWORD) -> None:
    mail.outbox.clear()
    client.post("/accounts/password/reset/", {"email": user.email})
    form_url = client.get(_reset_link(mail.outbox[0]))["Location"]
    response = client.post(form_url, {"password1": password, "password2": password})
    assert response.status_code == 302, response.content[:500]


# --- A changed password, a reset, an MFA reset: nothing of the old access survives -------------


def test_changing_the_password_revokes_tokens_and_ends_other_sessions_but_keeps_this_one(
    reviewer, llama_catalog, login_with_totp, login_with_password, bearer_client
):
    elsewhere = Client()  # e.g. a laptop left logged in, or a stolen session cookie
    login_with_totp(elsewhere, reviewer)
    token_client = bearer_client(reviewer)
    here = Client()
    _login_with_recovery_code(here, reviewer, login_with_password)
    assert _reaches_review_queue(elsewhere) and token_client.get("/api/v1/models").status_code == 200

    response = here.post(
        "/accounts/password/change/",
        {"oldpassword": TEST_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert token_client.get("/api/v1/models").status_code == 401
    assert elsewhere.get("/review/")["Location"].startswith("/accounts/login/")
    assert not _logged_in(elsewhere)
    assert _reaches_review_queue(here)  # still logged in, still MFA-verified
    revoked = AuditEvent.objects.get(action="api_token.revoked")
    assert revoked.details["reason"] == "password_changed" and revoked.actor == reviewer
    ended = AuditEvent.objects.get(action="user.sessions_ended")
    assert ended.details == {"reason": "password_changed", "current_session_kept": True}
    assert ended.target_id == str(reviewer.pk)


def test_resetting_the_password_revokes_tokens_and_ends_every_session(
    reviewer, llama_catalog, login_with_totp, bearer_client
):
    verified_session = Client()
    login_with_totp(verified_session, reviewer)
    token_client = bearer_client(reviewer)
    assert _reaches_review_queue(verified_session)

    _reset_password(Client(), reviewer)

    assert token_client.get("/api/v1/models").status_code == 401
    assert verified_session.get("/review/")["Location"].startswith("/accounts/login/")
    assert not _logged_in(verified_session)
    assert AuditEvent.objects.get(action="api_token.revoked").details["reason"] == "password_reset"
    ended = AuditEvent.objects.get(action="user.sessions_ended")
    assert ended.details == {"reason": "password_reset", "current_session_kept": False}


@pytest.mark.parametrize(
    "session_engine",
    [
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cache",
        # Held by the browser alone: nothing on the server to delete, and it still ends.
        "django.contrib.sessions.backends.signed_cookies",
    ],
)
def test_reset_mfa_revokes_tokens_and_ends_every_session_whatever_stores_them(
    reviewer, llama_catalog, login_with_totp, bearer_client, settings, session_engine
):
    settings.SESSION_ENGINE = session_engine
    verified_session = Client()
    login_with_totp(verified_session, reviewer)
    token_client = bearer_client(reviewer)
    assert _reaches_review_queue(verified_session)

    output = StringIO()
    call_command("portal_user", "reset-mfa", reviewer.email, stdout=output)

    assert token_client.get("/api/v1/models").status_code == 401
    assert verified_session.get("/review/")["Location"].startswith("/accounts/login/")
    assert not _logged_in(verified_session)
    assert "sessions ended" in output.getvalue()
    assert AuditEvent.objects.get(action="api_token.revoked").details["reason"] == "mfa_reset"
    assert AuditEvent.objects.get(action="user.sessions_ended").details == {
        "reason": "mfa_reset",
        "current_session_kept": False,
    }


# --- Links in allauth's emails come from PORTAL_BASE_URL, not the Host header ---------------------


@pytest.fixture
def spoofable_host(settings):
    """An allowed host the client reaches on any port it names, and the configured public URL."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "allowed-host"]
    settings.PORTAL_BASE_URL = "https://portal.example.org"
    return "allowed-host:9999"


def _links(message) -> list[str]:
    return re.findall(r"https?://\S+", message.body)


def _assert_every_link_on_the_portal(message) -> None:
    links = _links(message)
    assert links, message.body
    assert all(link.startswith("https://portal.example.org/") for link in links), links
    assert "allowed-host" not in message.body and "9999" not in message.body


def test_password_reset_email_links_to_the_portal_base_url_whatever_host_was_asked(client, researcher, spoofable_host):
    client.post("/accounts/password/reset/", {"email": researcher.email}, HTTP_HOST=spoofable_host)

    (message,) = mail.outbox
    _assert_every_link_on_the_portal(message)
    assert _links(message)[0].startswith("https://portal.example.org/accounts/password/reset/key/")
    # and the link works
    assert client.get(_reset_link(message)).status_code == 302


def test_sign_up_verification_email_links_to_the_portal_base_url(client, db, spoofable_host):
    password = "a-long-test-password-1"
    client.post(
        "/accounts/signup/",
        {"email": "newcomer@uni.example.edu", "password1": password, "password2": password},
        HTTP_HOST=spoofable_host,
    )

    (message,) = mail.outbox
    _assert_every_link_on_the_portal(message)
    assert _links(message)[0].startswith("https://portal.example.org/accounts/confirm-email/")


def test_emails_about_unknown_or_existing_accounts_link_to_the_portal_base_url(client, researcher, spoofable_host):
    client.post("/accounts/password/reset/", {"email": "nobody@nowhere.example.com"}, HTTP_HOST=spoofable_host)
    client.post(
        "/accounts/signup/",
        {"email": researcher.email, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        HTTP_HOST=spoofable_host,
    )

    unknown, already_exists = mail.outbox
    _assert_every_link_on_the_portal(unknown)
    assert "https://portal.example.org/accounts/signup/" in unknown.body
    _assert_every_link_on_the_portal(already_exists)
    assert "https://portal.example.org/accounts/password/reset/" in already_exists.body


# --- Failed logins lock the address they come from, and only slow the account down ---------------


def _client_at(address: str, *, behind_proxy: bool) -> Client:
    if behind_proxy:
        return Client(REMOTE_ADDR=PROXY_ADDRESS, HTTP_X_FORWARDED_FOR=address)
    return Client(REMOTE_ADDR=address)


def _fail_login(client, email: str):
    response = client.post("/accounts/login/", {"login": email, "password": "not-the-password"})
    assert response.status_code == 200
    return response


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["direct", "behind_one_proxy"])
def test_failed_logins_for_a_reviewer_lock_out_the_attackers_address_not_the_reviewer(
    reviewer, llama_catalog, login_with_totp, settings, behind_proxy
):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1 if behind_proxy else 0
    attacker = _client_at(ATTACKER_ADDRESS, behind_proxy=behind_proxy)
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT * 3):
        _fail_login(attacker, reviewer.email)

    reviewer_client = _client_at(REVIEWER_ADDRESS, behind_proxy=behind_proxy)
    login_with_totp(reviewer_client, reviewer)

    assert _reaches_review_queue(reviewer_client)
    # Even the right password is refused from the attacker's address, with a message that says why.
    refused = attacker.post("/accounts/login/", {"login": reviewer.email, "password": TEST_PASSWORD})
    assert refused.status_code == 200
    assert LOCKED_HERE in refused.content.decode()
    assert "Wait up to 15 minutes" in refused.content.decode()
    assert not _logged_in(attacker)


def test_naming_another_port_in_the_host_header_does_not_lift_the_lock(client, researcher, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _fail_login(client, researcher.email)

    response = client.post(
        "/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD}, HTTP_HOST="testserver:8081"
    )

    assert not _logged_in(client)
    assert LOCKED_HERE in response.content.decode()


def test_many_addresses_together_slow_the_account_down_but_its_owners_address_still_logs_in(
    reviewer, llama_catalog, login_with_totp, login_with_password, settings
):
    settings.LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE = settings.LOGIN_FAILURES_PER_ACCOUNT + 1
    # The reviewer logged in from their office before the attack.
    office = Client(REMOTE_ADDR=REVIEWER_ADDRESS)
    login_with_totp(office, reviewer)
    office.post("/accounts/logout/")
    # A botnet: each address stays under its own lock, together they reach the account's limit.
    for n in range(settings.LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE):
        _fail_login(Client(REMOTE_ADDR=f"192.0.2.{n + 1}"), reviewer.email)

    newcomer = Client(REMOTE_ADDR="192.0.2.200")
    slowed = newcomer.post("/accounts/login/", {"login": reviewer.email, "password": TEST_PASSWORD})

    assert SLOWED_DOWN in slowed.content.decode()
    assert not _logged_in(newcomer)
    _login_with_recovery_code(office, reviewer, login_with_password)
    assert _reaches_review_queue(office)
    # A slow-down, not a lock: a minute later the new address is heard again.
    later = time.time() + 61
    clock = SimpleNamespace(time=lambda: later, monotonic=time.monotonic, sleep=time.sleep)
    with mock.patch("allauth.core.internal.ratelimit.time", clock):
        response = newcomer.post("/accounts/login/", {"login": reviewer.email, "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/authenticate/")


# --- The account's own name -------------------------------------------------------------------


def test_an_account_name_with_a_text_direction_override_is_refused_in_the_admin(admin_user_client, researcher):
    response = admin_user_client.post(
        f"/admin/portal/user/{researcher.pk}/change/",
        {
            "email": researcher.email,
            "first_name": "Ada",
            "last_name": "\u202eecalevol",
            "is_active": "on",
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2023-02-24",
            "date_joined_1": "10:00:00",
        },
    )

    assert response.status_code == 200
    assert "text-direction control characters (U+202E)" in response.content.decode()
    researcher.refresh_from_db()
    assert researcher.last_name == ""
