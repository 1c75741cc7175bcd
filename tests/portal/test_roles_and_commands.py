"""Roles (groups with an explicit list of permissions, deny by default) and the
operator commands that create accounts and tokens.

Personas: an operator at the shell, a researcher, a reviewer and an admin.
"""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from access.audit.models import AuditEvent
from portal import roles
from portal.models import ApiToken, User
from portal.services import api_token_revoke, user_create, user_role_set
from tests.factories import UserFactory

OPERATOR_PASSWORD = "correct-horse-battery-42"
NEW_EMAIL = "rita.new@lab.example.org"


def portal_user_add(email: str, *args: str) -> str:
    out = StringIO()
    call_command("portal_user", "add", email, *args, stdout=out)
    return out.getvalue()


def portal_token_create(email: str, *args: str) -> str:
    out = StringIO()
    call_command("portal_token", "create", email, *args, stdout=out)
    return out.getvalue()


def _group_names(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def _dotted(permissions) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in permissions}


# --- Role groups --------------------------------------------------------------------


@pytest.mark.parametrize("role", roles.ROLES)
def test_role_group_has_exactly_the_listed_permissions(db, role):
    group = Group.objects.get(name=role)

    assert _dotted(group.permissions.select_related("content_type")) == set(roles.ROLE_PERMISSIONS[role])


def test_researchers_hold_no_permissions_at_all(researcher):
    assert Group.objects.get(name=roles.RESEARCHER).permissions.count() == 0
    assert researcher.get_all_permissions() == set()
    assert not researcher.has_perm("access.view_modelvariant")
    assert not researcher.has_perm("access.view_auditevent")
    assert not researcher.is_staff


def test_reviewers_may_review_but_not_read_the_audit_log_or_edit_the_catalog(reviewer):
    assert reviewer.get_all_permissions() == set(roles.ROLE_PERMISSIONS[roles.REVIEWER])
    assert reviewer.has_perm("access.review_access")
    assert not reviewer.has_perm("access.view_auditevent")
    assert not reviewer.has_perm("access.change_modelvariant")
    assert not reviewer.is_staff


def test_admins_hold_the_admin_permissions_and_are_staff_but_not_superusers(admin_user):
    assert admin_user.get_all_permissions() == set(roles.ROLE_PERMISSIONS[roles.ADMIN])
    assert admin_user.is_staff
    assert not admin_user.is_superuser


def test_no_role_may_delete_audit_events_or_users(db):
    for role in roles.ROLES:
        codenames = set(roles.ROLE_PERMISSIONS[role])
        assert "access.delete_auditevent" not in codenames
        assert "access.change_auditevent" not in codenames
        assert "portal.delete_user" not in codenames


def test_roles_sync_removes_permissions_added_by_hand(db):
    reviewers = Group.objects.get(name=roles.REVIEWER)
    reviewers.permissions.add(Permission.objects.get(codename="delete_user"))

    roles.roles_sync()

    assert _dotted(reviewers.permissions.select_related("content_type")) == set(roles.ROLE_PERMISSIONS[roles.REVIEWER])


def test_role_groups_are_recreated_when_missing(researcher):
    Group.objects.filter(name=roles.REVIEWER).delete()

    user_role_set(user=researcher, role=roles.REVIEWER)

    assert _group_names(researcher) == {roles.RESEARCHER, roles.REVIEWER}
    assert researcher.has_perm("access.review_access")


def test_unknown_role_is_refused(researcher):
    with pytest.raises(ValidationError, match="Unknown role"):
        user_role_set(user=researcher, role="superuser")

    assert _group_names(researcher) == {roles.RESEARCHER}


def test_every_account_is_a_researcher_whatever_else_it_is(researcher, reviewer, admin_user):
    assert roles.user_has_role(researcher, roles.RESEARCHER)
    assert roles.user_has_role(reviewer, roles.RESEARCHER)
    assert roles.user_has_role(admin_user, roles.RESEARCHER)
    assert roles.user_primary_role(reviewer) == roles.REVIEWER
    assert roles.user_primary_role(admin_user) == roles.ADMIN


def test_staff_accounts_count_as_privileged_whatever_their_groups(db):
    # E.g. made with createsuperuser, outside the roles.
    staff = UserFactory()
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    staff.refresh_from_db()

    assert roles.user_is_privileged(staff)


def test_researcher_is_refused_the_admin(client, researcher, login_with_password):
    login_with_password(client, researcher)

    response = client.get("/admin/")
    assert response.status_code == 302
    response = client.get(response["Location"])

    assert response.status_code == 403
    assert "administrators" in response.content.decode()


def test_researcher_is_refused_admin_pages_below_the_index(client, researcher, login_with_password):
    login_with_password(client, researcher)

    response = client.get("/admin/access/auditevent/", follow=True)

    assert response.status_code == 403


# --- portal_user add ----------------------------------------------------------------


def test_portal_user_add_creates_an_account_with_the_role_and_a_verified_email(db):
    output = portal_user_add(NEW_EMAIL, "--role", "reviewer", "--password", OPERATOR_PASSWORD, "--verified")

    user = User.objects.get(email=NEW_EMAIL)
    assert user.check_password(OPERATOR_PASSWORD)
    assert _group_names(user) == {roles.RESEARCHER, roles.REVIEWER}
    assert roles.user_primary_role(user) == roles.REVIEWER
    assert not user.is_staff
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.verified, address.primary) == (NEW_EMAIL, True, True)
    assert f"created {NEW_EMAIL} with role reviewer" in output
    assert "must enrol an authenticator app" in output


def test_portal_user_add_writes_audit_events(db):
    portal_user_add(NEW_EMAIL, "--role", "reviewer", "--password", OPERATOR_PASSWORD, "--verified")

    user = User.objects.get(email=NEW_EMAIL)
    created = AuditEvent.objects.get(action="user.created", target_id=str(user.pk))
    assert created.details == {"role": "reviewer", "email_verified": True}
    assert created.actor is None and created.actor_label == "system"
    changed = AuditEvent.objects.get(action="user.role_changed", target_id=str(user.pk))
    assert changed.details == {"from": "researcher", "to": "reviewer"}


def test_portal_user_account_can_log_in_with_the_password(client, db):
    portal_user_add(NEW_EMAIL, "--password", OPERATOR_PASSWORD, "--verified")

    response = client.post("/accounts/login/", {"login": NEW_EMAIL, "password": OPERATOR_PASSWORD})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(email=NEW_EMAIL).pk)


def test_portal_user_add_admin_makes_a_staff_account(db):
    portal_user_add(NEW_EMAIL, "--role", "admin", "--password", OPERATOR_PASSWORD, "--verified")

    user = User.objects.get(email=NEW_EMAIL)
    assert user.is_staff and not user.is_superuser
    assert _group_names(user) == {roles.RESEARCHER, roles.ADMIN}


def test_portal_user_add_defaults_to_researcher_with_an_unverified_email_and_no_password(db):
    output = portal_user_add("  Mixed.Case@Uni.Example.EDU ")

    user = User.objects.get(email="mixed.case@uni.example.edu")
    assert _group_names(user) == {roles.RESEARCHER}
    assert not user.has_usable_password()
    assert EmailAddress.objects.get(user=user).verified is False
    assert "Forgot password" in output


def test_portal_user_add_again_changes_the_role_and_audits_it(db):
    portal_user_add(NEW_EMAIL, "--role", "reviewer", "--password", OPERATOR_PASSWORD, "--verified")

    output = portal_user_add(NEW_EMAIL, "--role", "admin")

    user = User.objects.get(email=NEW_EMAIL)
    assert _group_names(user) == {roles.RESEARCHER, roles.ADMIN}
    assert user.is_staff
    assert user.check_password(OPERATOR_PASSWORD)  # untouched without --password
    assert f"updated {NEW_EMAIL} with role admin" in output
    assert User.objects.filter(email=NEW_EMAIL).count() == 1
    event = AuditEvent.objects.filter(action="user.role_changed", target_id=str(user.pk)).first()
    assert event.details == {"from": "reviewer", "to": "admin"}


def test_portal_user_add_can_take_a_role_away(db):
    portal_user_add(NEW_EMAIL, "--role", "admin", "--password", OPERATOR_PASSWORD, "--verified")

    portal_user_add(NEW_EMAIL, "--role", "researcher")

    user = User.objects.get(email=NEW_EMAIL)
    assert _group_names(user) == {roles.RESEARCHER}
    assert not user.is_staff
    assert user.get_all_permissions() == set()


def test_portal_user_add_with_the_same_role_writes_no_role_event(researcher):
    before = AuditEvent.objects.filter(action="user.role_changed").count()

    portal_user_add(researcher.email, "--role", "researcher")

    assert AuditEvent.objects.filter(action="user.role_changed").count() == before


def test_portal_user_add_finds_existing_accounts_whatever_the_case(researcher):
    portal_user_add(researcher.email.upper(), "--role", "reviewer")

    assert User.objects.count() == 1
    assert roles.user_primary_role(User.objects.get()) == roles.REVIEWER


def test_portal_user_add_can_reset_a_password_and_verify_an_existing_email(db):
    user = UserFactory(email=NEW_EMAIL, verified_email=False)

    portal_user_add(NEW_EMAIL, "--password", OPERATOR_PASSWORD, "--verified")

    user.refresh_from_db()
    assert user.check_password(OPERATOR_PASSWORD)
    assert EmailAddress.objects.get(user=user).verified is True


def test_portal_user_add_refuses_a_short_password_with_a_clear_message(db):
    with pytest.raises(CommandError, match="too short"):
        portal_user_add(NEW_EMAIL, "--role", "reviewer", "--password", "short1", "--verified")

    assert not User.objects.filter(email=NEW_EMAIL).exists()
    assert not AuditEvent.objects.filter(action="user.created").exists()


def test_portal_user_add_refuses_a_common_password(db):
    with pytest.raises(CommandError, match="too common"):
        portal_user_add(NEW_EMAIL, "--password", "password123")

    assert not User.objects.filter(email=NEW_EMAIL).exists()


def test_portal_user_add_refuses_a_bad_password_for_an_existing_account_and_keeps_its_role(researcher):
    with pytest.raises(CommandError, match="too short"):
        portal_user_add(researcher.email, "--role", "admin", "--password", "short1")

    researcher.refresh_from_db()
    assert _group_names(researcher) == {roles.RESEARCHER}
    assert not researcher.is_staff


def test_portal_user_add_refuses_an_unknown_role(db):
    with pytest.raises(CommandError, match="invalid choice"):
        portal_user_add(NEW_EMAIL, "--role", "superuser")

    assert not User.objects.exists()


def test_portal_user_add_refuses_an_invalid_email(db):
    with pytest.raises(CommandError, match="valid email"):
        portal_user_add("not-an-email", "--password", OPERATOR_PASSWORD)

    assert not User.objects.exists()


def test_user_create_refuses_an_email_already_taken_in_another_case(researcher):
    with pytest.raises(ValidationError, match="already exists"):
        user_create(email=researcher.email.upper(), password=OPERATOR_PASSWORD)

    assert User.objects.count() == 1


# --- portal_token create ------------------------------------------------------------


def test_portal_token_create_prints_the_token_alone_on_its_last_line(researcher):
    output = portal_token_create(researcher.email, "--name", "cluster job")

    last_line = output.rstrip("\n").splitlines()[-1]
    assert last_line.startswith("mwp_")
    assert " " not in last_line
    token = ApiToken.objects.get(user=researcher)
    assert token.name == "cluster job"
    assert token.expires_at is None
    assert last_line.startswith(token.hint)
    assert AuditEvent.objects.get(action="api_token.created").details["user"] == researcher.email


def test_portal_token_authenticates_the_api_until_revoked(researcher, llama_catalog):
    secret = portal_token_create(researcher.email, "--name", "cluster job").rstrip("\n").splitlines()[-1]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert api.get("/api/v1/models").status_code == 200

    api_token_revoke(token=ApiToken.objects.get(user=researcher), actor=None)
    response = api.get("/api/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_portal_token_create_finds_the_account_whatever_the_case(researcher):
    portal_token_create(researcher.email.upper())

    assert ApiToken.objects.get(user=researcher).name == "created by operator"


def test_portal_token_create_with_days_sets_an_expiry(researcher):
    before = timezone.now()

    output = portal_token_create(researcher.email, "--days", "30")

    token = ApiToken.objects.get(user=researcher)
    assert before + dt.timedelta(days=30) <= token.expires_at <= timezone.now() + dt.timedelta(days=30)
    assert f"expires {token.expires_at:%Y-%m-%d}" in output


@pytest.mark.parametrize("days", ["0", "-3"])
def test_portal_token_create_refuses_days_below_one(researcher, days):
    with pytest.raises(CommandError, match="at least 1"):
        portal_token_create(researcher.email, "--days", days)

    assert not ApiToken.objects.exists()


def test_portal_token_create_for_an_unknown_email_fails_with_a_hint(db):
    with pytest.raises(CommandError, match="No account with email nobody@nowhere.example.com"):
        portal_token_create("nobody@nowhere.example.com")

    assert not ApiToken.objects.exists()


def test_portal_token_create_for_a_deactivated_account_fails(researcher):
    researcher.is_active = False
    researcher.save(update_fields=["is_active"])

    with pytest.raises(CommandError, match="deactivated"):
        portal_token_create(researcher.email)

    assert not ApiToken.objects.exists()
