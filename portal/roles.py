"""Roles are Django groups with an explicit list of permissions; nothing is
granted that is not listed here (deny by default).

- researcher: the default for every account; applies, downloads, uses the sandbox.
  Holds no model permissions: what a researcher may do is decided by their own
  requests and grants, not by a permission.
- reviewer: works the review queue and manages grants.
- admin: everything a reviewer does, plus the catalog, licenses, users, and the
  audit log, through the Django admin.

Reviewers and admins must use MFA (see ``portal.mfa``).
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

RESEARCHER = "researcher"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (RESEARCHER, REVIEWER, ADMIN)
PRIVILEGED_ROLES = (REVIEWER, ADMIN)

_REVIEWER_PERMISSIONS = [
    "access.review_access",
    "access.manage_grants",
    "access.view_modelvariant",
    "access.view_modelfamily",
    "access.view_licenseversion",
    "access.view_rejectiontemplate",
]
_ADMIN_PERMISSIONS = _REVIEWER_PERMISSIONS + [
    "access.add_rejectiontemplate",
    "access.change_rejectiontemplate",
    # Requests, grants and acceptances are read-only in the admin: their states change through services.
    "access.view_accessrequest",
    "access.view_grant",
    "access.view_licenseacceptance",
    "access.add_modelfamily",
    "access.change_modelfamily",
    "access.add_modelvariant",
    "access.change_modelvariant",
    "access.add_licenseversion",
    "access.publish_license",
    "access.view_auditevent",
    "portal.view_user",
    "portal.change_user",
    "portal.view_apitoken",
    "auth.view_group",
    # Sandbox jobs and quotas are read-only in the admin: reviewers set quotas on the review pages.
    "inference.view_sandboxjob",
    "inference.view_sandboxquota",
    # Webhooks: endpoints are set up here; the delivery log is read-only but for redelivery.
    "access.view_webhookendpoint",
    "access.add_webhookendpoint",
    "access.change_webhookendpoint",
    "access.delete_webhookendpoint",
    "access.view_webhookdelivery",
    "access.change_webhookdelivery",
    "access.view_webhookattempt",
]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    RESEARCHER: [],
    REVIEWER: _REVIEWER_PERMISSIONS,
    ADMIN: _ADMIN_PERMISSIONS,
}


def _permissions(codenames: list[str]) -> list[Permission]:
    found = []
    for dotted in codenames:
        app_label, codename = dotted.split(".", 1)
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


@transaction.atomic
def roles_sync() -> None:
    """Create the role groups and set their permissions to exactly ROLE_PERMISSIONS."""
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_permissions(codenames))


def roles_sync_after_migrate(sender, **kwargs) -> None:
    # Permissions are created by the auth app's own post_migrate handler; on a
    # partial migration some may not exist yet, and the next migrate finishes.
    try:
        roles_sync()
    except Permission.DoesNotExist:
        pass


def role_group(role: str) -> Group:
    try:
        return Group.objects.get(name=role)
    except Group.DoesNotExist:
        roles_sync()  # e.g. after a database reset that skipped post_migrate
        return Group.objects.get(name=role)


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        cached.add(RESEARCHER)
        user._portal_roles = cached
    return cached


def user_has_role(user, role: str) -> bool:
    return role in user_roles(user)


def user_is_privileged(user) -> bool:
    """Reviewers, admins and any Django staff or superuser must use MFA."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff or user.is_superuser or user_roles(user) & set(PRIVILEGED_ROLES):
        return True
    # A review permission granted outside the roles (directly, or by another group) counts too.
    return user.has_perm("access.review_access")


def user_primary_role(user) -> str:
    roles = user_roles(user)
    for role in (ADMIN, REVIEWER, RESEARCHER):
        if role in roles:
            return role
    return RESEARCHER
