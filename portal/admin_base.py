"""Base classes for every app's admin pages: saves that write audit events, and read-only pages."""

from django.contrib import admin

from access.audit.services import audit_event_record


class AuditedModelAdmin(admin.ModelAdmin):
    """Admin edits are state changes too: each save writes an audit event in the
    admin's own transaction."""

    audit_action_prefix = ""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_event_record(
            action=f"{self.audit_action_prefix}.{'changed' if change else 'created'}",
            actor=request.user,
            target=obj,
            request=request,
            details={"fields": sorted(form.changed_data)},
        )

    def has_delete_permission(self, request, obj=None):
        # The rows edited this way are referenced by other records and by the audit log: they are
        # retired (unlisted, deactivated), never deleted.
        return False


class _ReadOnly:
    """Shows every field and never adds, edits or deletes."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyModelAdmin(_ReadOnly, admin.ModelAdmin):
    """For rows whose state changes only through services (which check the rules and
    write the audit events): the admin shows them and never adds, edits or deletes."""


class ReadOnlyInline(_ReadOnly, admin.TabularInline):
    """Rows shown as part of their parent: whoever holds ``parent_view_permission`` (the
    permission to view the parent) reads them with it."""

    extra = 0
    can_delete = False
    show_change_link = False
    parent_view_permission = ""

    def has_view_permission(self, request, obj=None):
        return bool(self.parent_view_permission) and request.user.has_perm(self.parent_view_permission)
