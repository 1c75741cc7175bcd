from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Who may get what: catalog, licenses, requests, review, grants, downloads, audit, webhooks."""

    name = "access"
    verbose_name = "Access to model weights"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        import access.tasks  # noqa: F401  (registers every task, so code can queue one by name in any process)
        from access.audit.models import AuditEvent
        from access.distribution import checks  # noqa: F401  (registers the system checks)
        from access.webhooks.services import webhook_messages_record

        def audit_event_saved(sender, instance, created, raw=False, **kwargs):
            # Each access event's webhook messages, in the transaction of its change.
            if created and not raw:
                webhook_messages_record(instance)

        post_save.connect(audit_event_saved, sender=AuditEvent, dispatch_uid="access.webhooks")
