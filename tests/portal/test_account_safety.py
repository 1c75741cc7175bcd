"""Safety rails around accounts: operators cannot demote by accident, promotion
retires old tokens, lost authenticators can be reset, admin edits are audited,
TOTP secrets are not readable from the database."""

from io import StringIO

import pytest
from allauth.mfa.models import Authenticator
from django.core.management import call_command

from access.audit.models import AuditEvent
from portal import roles
from portal.services import user_role_set
from tests.factories import UserFactory


def portal_user(*args: str) -> str:
    out = StringIO()
    call_command("portal_user", *args, stdout=out)
    return out.getvalue()


def test_portal_user_add_without_role_keeps_an_admin_an_admin(admin_user):
    portal_user("add", admin_user.email, "--password", "a-brand-new-passphrase-9")

    admin_user.refresh_from_db()
    assert roles.user_primary_role(admin_user) == roles.ADMIN
    assert admin_user.is_staff
    assert admin_user.check_password("a-brand-new-passphrase-9")
    assert AuditEvent.objects.filter(action="user.password_set", target_id=str(admin_user.pk)).count() == 1
    assert not AuditEvent.objects.filter(action="user.role_changed", target_id=str(admin_user.pk)).exclude(
        details__to=roles.ADMIN
    ).exists()


def test_portal_user_add_creates_researchers_when_no_role_is_given(db):
    output = portal_user("add", "new.person@uni.example.edu", "--password", "a-brand-new-passphrase-9")

    assert "created new.person@uni.example.edu with role researcher" in output


def test_promotion_to_reviewer_revokes_tokens_made_without_mfa(researcher, llama_catalog, bearer_client):
    api = bearer_client(researcher)
    assert api.get("/api/v1/models").status_code == 200

    user_role_set(user=researcher, role=roles.REVIEWER)

    assert api.get("/api/v1/models").status_code == 401
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.details["reason"] == "role_promoted"


def test_demotion_keeps_tokens(reviewer, llama_catalog, bearer_client):
    api = bearer_client(reviewer)

    user_role_set(user=reviewer, role=roles.RESEARCHER)

    assert api.get("/api/v1/models").status_code == 200


def test_reset_mfa_removes_authenticators_so_the_reviewer_enrols_again(reviewer, client, login_with_password):
    output = portal_user("reset-mfa", reviewer.email)

    assert "removed" in output
    assert not Authenticator.objects.filter(user=reviewer).exists()
    assert AuditEvent.objects.filter(action="mfa.reset_by_operator", target_id=str(reviewer.pk)).count() == 1
    # The next login goes straight to enrolment instead of asking for a code.
    response = login_with_password(client, reviewer)
    assert response["Location"] == "/accounts/2fa/required/?next=%2F"


def test_reset_mfa_for_an_account_without_authenticator_changes_nothing(researcher):
    assert "nothing to do" in portal_user("reset-mfa", researcher.email)
    assert not AuditEvent.objects.filter(action="mfa.reset_by_operator").exists()


def test_totp_secrets_are_stored_encrypted(db, totp_enable):
    user = UserFactory()
    secret = totp_enable(user)

    stored = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP).data["secret"]
    assert secret not in stored
    assert stored.startswith("fernet:")


def test_admin_editing_a_user_leaves_an_audit_event(admin_user_client, admin_user, researcher):
    url = f"/admin/portal/user/{researcher.pk}/change/"
    form = {
        "email": researcher.email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2023-02-24",
        "date_joined_1": "10:00:00",
    }
    response = admin_user_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]

    event = AuditEvent.objects.get(action="user.changed_by_admin", target_id=str(researcher.pk))
    assert event.actor == admin_user
    researcher.refresh_from_db()
    assert researcher.first_name == "Ada"


def test_admin_setting_a_password_leaves_an_audit_event(admin_user_client, researcher):
    response = admin_user_client.post(
        f"/admin/portal/user/{researcher.pk}/password/",
        {"password1": "set-by-the-admin-2023", "password2": "set-by-the-admin-2023", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    researcher.refresh_from_db()
    assert researcher.check_password("set-by-the-admin-2023")
    assert AuditEvent.objects.filter(action="user.changed_by_admin", target_id=str(researcher.pk)).exists()


@pytest.mark.redis
def test_login_lockout_counters_live_in_redis_shared_by_every_web_process(client, researcher, settings):
    """With REDIS_URL set, the rate-limit state is in Redis, so every gunicorn worker
    and replica sees the same failure count for an account."""
    import redis

    assert settings.CACHES["default"]["BACKEND"] == "portal.cache.FaultTolerantRedisCache"
    server = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    before = set(server.keys("*"))

    client.post("/accounts/login/", {"login": researcher.email, "password": "wrong-password"})

    new_keys = {key.decode() for key in set(server.keys("*")) - before}
    assert any("rl:login_failed" in key or "login_failed" in key for key in new_keys), new_keys
