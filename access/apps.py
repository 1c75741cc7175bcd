from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who may get what: catalog, licenses, requests, review, grants, downloads, audit."""

    name = "access"
    verbose_name = "Access to model weights"

    def ready(self) -> None:
        from access.distribution import checks  # noqa: F401  (registers the system checks)
