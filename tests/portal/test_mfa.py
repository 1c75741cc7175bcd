"""Two-factor authentication: who must use it, what it guards, how it is enrolled,
kept, removed and replaced by a recovery code.

Personas: a reviewer and an admin who log in with TOTP, a reviewer and an admin
who have not set it up yet, a researcher for whom it is optional.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY
from allauth.mfa.utils import decrypt
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse

from access.audit.models import AuditEvent
from portal import roles
from portal.mfa import privileged_mfa_required, session_is_mfa_verified, session_mark_mfa_enrolled
from portal.models import ApiToken, User
from tests.factories import TEST_PASSWORD, UserFactory
from tests.totp import totp_code_fresh

ENROL_URL = "/accounts/2fa/totp/activate/"
# Where a privileged user without MFA is sent first: why it is required, then on to ENROL_URL.
REQUIRED_URL = "/accounts/2fa/required/"


@pytest.fixture
def admin_without_mfa(db):
    return UserFactory(email="new.admin@lab.example.org", role=roles.ADMIN)


def _is_logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _follow_to_the_end(client, url: str, limit: int = 5):
    """GET url and its redirects one by one; returns the last response and the path taken."""
    response = client.get(url)
    hops = [url]
    while response.status_code == 302 and len(hops) <= limit:
        hops.append(response["Location"])
        response = client.get(response["Location"])
    assert response.status_code != 302, f"redirect loop: {hops}"
    return response, hops


def _wrong_code(secret: str) -> str:
    """A six-digit code that is valid in no time step near now."""
    totp = pyotp.TOTP(secret)
    valid = {totp.at(time.time(), counter_offset=offset) for offset in (-2, -1, 0, 1, 2)}
    return next(code for code in ("000000", "111111", "222222", "333333", "444444", "555555") if code not in valid)


def _secret_of(user) -> str:
    return decrypt(Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP).data["secret"])


def _reauthenticate(client, password: str = TEST_PASSWORD) -> None:
    """allauth asks for the password again before any change to MFA; answer it."""
    response = client.post("/accounts/reauthenticate/", {"password": password})
    assert response.status_code == 302, response.content[:500]


def _open_enrolment(client):
    """The set-up page; a session whose password was not typed in the last few minutes (e.g. one
    made with force_login) is asked for it first."""
    response = client.get(ENROL_URL)
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/reauthenticate/")
        _reauthenticate(client)
        response = client.get(ENROL_URL)
    assert response.status_code == 200
    return response


def _enrol_totp(client) -> str:
    """Go through the authenticator-app set-up page the way a person does; returns the secret."""
    _open_enrolment(client)
    secret = client.session[SECRET_SESSION_KEY]
    response = client.post(ENROL_URL, {"code": totp_code_fresh(secret)})
    assert response.status_code == 302, response.content[:500]
    return secret


def _create_token(client, name: str = "laptop script"):
    return client.post("/account/tokens/", {"name": name})


# --- Logging in with a second factor ------------------------------------------------


def test_password_alone_does_not_log_in_a_reviewer_with_totp(client, reviewer):
    response = client.post("/accounts/login/", {"login": reviewer.email, "password": TEST_PASSWORD})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/authenticate/")
    assert not _is_logged_in(client)
    assert client.get("/account/")["Location"].startswith("/accounts/login/")
    assert not AuditEvent.objects.filter(action="user.logged_in").exists()


def test_wrong_totp_code_does_not_complete_the_login(client, reviewer, login_with_password):
    login_with_password(client, reviewer)

    response = client.post("/accounts/2fa/authenticate/", {"code": _wrong_code(_secret_of(reviewer))})

    assert response.status_code == 200
    assert "Incorrect code" in response.content.decode()
    assert not _is_logged_in(client)


def test_totp_code_completes_the_login_and_verifies_the_session(client, reviewer, login_with_totp):
    login_with_totp(client, reviewer)

    assert client.session["_auth_user_id"] == str(reviewer.pk)
    assert "This session was verified with it." in client.get("/account/").content.decode()
    assert AuditEvent.objects.filter(action="user.logged_in", actor=reviewer).count() == 1


def test_researcher_with_totp_also_needs_the_code_to_log_in(client, researcher, totp_enable):
    totp_enable(researcher)

    response = client.post("/accounts/login/", {"login": researcher.email, "password": TEST_PASSWORD})

    assert response["Location"].startswith("/accounts/2fa/authenticate/")
    assert not _is_logged_in(client)


def test_recovery_code_logs_in_in_place_of_the_totp_code(client, reviewer, login_with_password):
    code = RecoveryCodes.activate(reviewer).generate_codes()[0]
    login_with_password(client, reviewer)

    response = client.post("/accounts/2fa/authenticate/", {"code": code})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(reviewer.pk)
    # The recovery code counts as the second factor: the reviewer may create tokens.
    assert _create_token(client).status_code == 200
    assert ApiToken.objects.filter(user=reviewer).count() == 1


def test_recovery_code_works_only_once(client, reviewer, login_with_password):
    code = RecoveryCodes.activate(reviewer).generate_codes()[0]
    login_with_password(client, reviewer)
    client.post("/accounts/2fa/authenticate/", {"code": code})
    client.post("/accounts/logout/")

    login_with_password(client, reviewer)
    response = client.post("/accounts/2fa/authenticate/", {"code": code})

    assert response.status_code == 200
    assert not _is_logged_in(client)


# --- What MFA guards: the admin and API tokens --------------------------------------


def test_reviewer_without_mfa_is_sent_from_admin_to_totp_enrolment(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)

    response, hops = _follow_to_the_end(client, "/admin/")

    assert hops == ["/admin/", "/admin/login/?next=/admin/", REQUIRED_URL + "?next=%2Fadmin%2F"]
    assert "Reviewers and administrators must log in with an authenticator app" in response.content.decode()
    # The password was typed seconds ago: the set-up page opens without asking for it again.
    assert client.get(ENROL_URL).status_code == 200


def test_reviewer_without_mfa_cannot_create_api_tokens(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)

    response = _create_token(client)

    assert response.status_code == 302
    assert response["Location"].startswith(REQUIRED_URL)
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.created").exists()


def test_account_page_tells_a_reviewer_without_mfa_to_turn_it_on(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)

    page = client.get("/account/").content.decode()

    assert "Reviewers and administrators must turn it on" in page
    assert 'action="/account/tokens/"' not in page


def test_reviewer_with_totp_can_create_api_tokens(reviewer_client, reviewer):
    response = _create_token(reviewer_client)

    assert response.status_code == 200
    assert ApiToken.objects.filter(user=reviewer).count() == 1


def test_reviewer_logged_in_with_totp_is_refused_the_admin_because_reviewers_are_not_staff(reviewer_client):
    response, hops = _follow_to_the_end(reviewer_client, "/admin/")

    assert response.status_code == 403
    assert _is_logged_in(reviewer_client)


def test_admin_logged_in_with_totp_reaches_the_admin_and_the_audit_log(admin_user_client, admin_user):
    assert admin_user_client.get("/admin/").status_code == 200

    response = admin_user_client.get("/admin/access/auditevent/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "user.logged_in" in page
    assert admin_user.email in page


def test_admin_with_totp_who_opens_the_admin_login_page_is_sent_on_to_the_admin(admin_user_client):
    response, hops = _follow_to_the_end(admin_user_client, "/admin/login/?next=/admin/")

    assert response.status_code == 200
    assert hops[-1] == "/admin/"


def test_anonymous_visitor_is_sent_from_admin_to_the_portal_login(client, db):
    response, hops = _follow_to_the_end(client, "/admin/")

    assert response.status_code == 200
    assert hops[-1] == "/accounts/login/?next=/admin/"


def test_admin_without_mfa_is_sent_from_admin_to_totp_enrolment(client, admin_without_mfa, login_with_password):
    login_with_password(client, admin_without_mfa)

    response, hops = _follow_to_the_end(client, "/admin/access/auditevent/")

    assert any(hop.startswith(REQUIRED_URL) for hop in hops)
    assert "user.logged_in" not in response.content.decode()


def test_admin_whose_session_skipped_the_code_is_logged_out_at_the_admin(client, admin_user):
    # E.g. a session that began before the account became an admin's.
    client.force_login(admin_user)

    response, hops = _follow_to_the_end(client, "/admin/")

    assert any(hop.startswith("/accounts/login/") for hop in hops)
    assert not _is_logged_in(client)


def test_reviewer_whose_session_skipped_the_code_cannot_create_tokens(client, reviewer):
    client.force_login(reviewer)

    response = _create_token(client)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not ApiToken.objects.exists()
    assert not _is_logged_in(client)


# --- Enrolling, keeping and removing TOTP -------------------------------------------
# Enrolment marks the session from an on-commit hook, so these tests commit for real.


@pytest.mark.django_db(transaction=True)
def test_enrolling_totp_verifies_the_session_for_the_admin(client, admin_without_mfa, login_with_password):
    login_with_password(client, admin_without_mfa)

    secret = _enrol_totp(client)

    assert _secret_of(admin_without_mfa) == secret
    assert client.get("/admin/").status_code == 200
    # One enrolment, one "mfa.enabled" (allauth adds the recovery codes with it, recorded apart).
    events = AuditEvent.objects.filter(action="mfa.enabled", actor=admin_without_mfa)
    assert [event.details["type"] for event in events] == ["totp"]
    assert AuditEvent.objects.filter(action="mfa.recovery_codes_generated", actor=admin_without_mfa).count() == 1


@pytest.mark.django_db(transaction=True)
def test_enrolling_totp_lets_a_reviewer_create_tokens(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)
    _enrol_totp(client)

    response = _create_token(client)

    assert response.status_code == 200
    assert ApiToken.objects.filter(user=reviewer_without_mfa).count() == 1


@pytest.mark.django_db(transaction=True)
def test_enrolling_totp_shows_recovery_codes(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)
    _open_enrolment(client)
    secret = client.session[SECRET_SESSION_KEY]

    response = client.post(ENROL_URL, {"code": totp_code_fresh(secret)})

    assert response["Location"] == "/accounts/2fa/recovery-codes/"
    assert Authenticator.objects.filter(user=reviewer_without_mfa, type=Authenticator.Type.RECOVERY_CODES).exists()
    codes = RecoveryCodes(
        Authenticator.objects.get(user=reviewer_without_mfa, type=Authenticator.Type.RECOVERY_CODES)
    ).get_unused_codes()
    assert codes[0] in client.get("/accounts/2fa/recovery-codes/").content.decode()


def test_enrolling_with_a_wrong_code_enables_nothing(client, reviewer_without_mfa, login_with_password):
    login_with_password(client, reviewer_without_mfa)
    _open_enrolment(client)
    secret = client.session[SECRET_SESSION_KEY]

    response = client.post(ENROL_URL, {"code": _wrong_code(secret)})

    assert response.status_code == 200
    assert "Incorrect code" in response.content.decode()
    assert not Authenticator.objects.filter(user=reviewer_without_mfa).exists()
    assert _create_token(client)["Location"].startswith(REQUIRED_URL)
    assert not ApiToken.objects.exists()


def test_enrolment_page_needs_login(client, db):
    response = client.get(ENROL_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("persona", ["reviewer", "admin_user"])
def test_privileged_users_cannot_deactivate_their_totp(client, persona, request, login_with_totp):
    user = request.getfixturevalue(persona)
    login_with_totp(client, user)
    _reauthenticate(client)

    page = client.get("/accounts/2fa/totp/deactivate/")
    response = client.post("/accounts/2fa/totp/deactivate/")

    assert "You cannot deactivate two-factor authentication" in page.content.decode()
    assert response.status_code == 200
    assert "You cannot deactivate two-factor authentication" in response.content.decode()
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    assert not AuditEvent.objects.filter(action="mfa.removed").exists()


def test_researcher_may_enrol_totp(researcher_client, researcher, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _enrol_totp(researcher_client)

    assert Authenticator.objects.filter(user=researcher, type=Authenticator.Type.TOTP).exists()
    assert AuditEvent.objects.filter(action="mfa.enabled", actor=researcher, details__type="totp").exists()
    assert 'class="badge ok">on' in researcher_client.get("/account/").content.decode()


def test_researcher_may_remove_totp(client, researcher, totp_enable, login_with_totp, login_with_password):
    totp_enable(researcher)
    login_with_totp(client, researcher)
    _reauthenticate(client)

    response = client.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=researcher, type=Authenticator.Type.TOTP).exists()
    assert AuditEvent.objects.filter(action="mfa.removed", actor=researcher).exists()
    client.post("/accounts/logout/")
    login_with_password(client, researcher)
    assert _is_logged_in(client)  # the password alone is enough again


def test_researcher_does_not_need_mfa_for_tokens(researcher_client, researcher):
    response = _create_token(researcher_client)

    assert response.status_code == 200
    assert ApiToken.objects.filter(user=researcher).count() == 1


def test_totp_code_cannot_be_replayed_for_a_second_login(client, reviewer, totp_now, login_with_password):
    code = totp_now(reviewer)
    login_with_password(client, reviewer)
    client.post("/accounts/2fa/authenticate/", {"code": code})
    client.post("/accounts/logout/")

    login_with_password(client, reviewer)
    response = client.post("/accounts/2fa/authenticate/", {"code": code})

    assert response.status_code == 200
    assert not _is_logged_in(client)


def test_superuser_made_outside_the_roles_still_needs_mfa_for_the_admin(client, db):
    # createsuperuser makes a staff account without a role; it is privileged all the same.
    superuser = User.objects.create_superuser(email="root@lab.example.org", password=TEST_PASSWORD)
    client.force_login(superuser)

    response, hops = _follow_to_the_end(client, "/admin/")

    assert any(hop.startswith(REQUIRED_URL) for hop in hops)


# --- The decorator that review pages use --------------------------------------------


def _guarded_request(rf, user, *, mfa_verified: bool = False):
    request = rf.get("/review/queue/?status=submitted")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = user
    request._messages = FallbackStorage(request)
    if mfa_verified:
        session_mark_mfa_enrolled(request, user)
    return request


@privileged_mfa_required
def _guarded_view(request):
    return HttpResponse("the page")


def test_mfa_guard_lets_researchers_through_without_mfa(rf, researcher):
    response = _guarded_view(_guarded_request(rf, researcher))

    assert response.content == b"the page"


def test_mfa_guard_sends_a_reviewer_without_mfa_to_enrol(rf, reviewer_without_mfa):
    response = _guarded_view(_guarded_request(rf, reviewer_without_mfa))

    assert response.status_code == 302
    assert response["Location"] == REQUIRED_URL + "?next=%2Freview%2Fqueue%2F%3Fstatus%3Dsubmitted"


def test_mfa_guard_logs_out_a_reviewer_whose_session_skipped_the_code(rf, reviewer):
    request = _guarded_request(rf, reviewer)

    response = _guarded_view(request)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/review/queue/")
    assert not request.user.is_authenticated


def test_mfa_guard_lets_a_verified_reviewer_through(rf, reviewer):
    response = _guarded_view(_guarded_request(rf, reviewer, mfa_verified=True))

    assert response.content == b"the page"


def test_anonymous_sessions_are_never_mfa_verified(rf, db):
    request = rf.get("/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = AnonymousUser()

    assert not session_is_mfa_verified(request)
    assert not roles.user_is_privileged(request.user)
