from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PortalConfig(AppConfig):
    """Cross-cutting pieces: users and roles, API tokens, the API conventions, health."""

    name = "portal"
    verbose_name = "Accounts and API tokens"

    def ready(self):
        from django.db.models.signals import post_migrate

        from portal import roles, signals  # noqa: F401  (connects receivers)

        # Every app's post_migrate, so the groups are complete once the last app's permissions exist.
        post_migrate.connect(roles.roles_sync_after_migrate)


class PortalAdminConfig(AdminConfig):
    """The Django admin, behind the same MFA rule as the review pages."""

    default_site = "portal.admin_site.PortalAdminSite"
