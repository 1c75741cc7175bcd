"""The audit log in the admin: read-only, filterable, exportable as CSV (formula-safe)."""

import csv
import json

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone

from access.audit.models import AuditEvent


def _csv_safe(value) -> str:
    """Neutralise spreadsheet formulas: audit fields carry user input (user agents, emails)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


class _Echo:
    def write(self, value):
        return value


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "actor_label", "action", "target_type", "target_label", "ip_address"]
    list_filter = ["action", "target_type", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["actor_label", "target_label", "target_id", "ip_address", "action"]
    date_hierarchy = "occurred_at"
    list_per_page = 100
    readonly_fields = [field.name for field in AuditEvent._meta.fields]
    change_list_template = "admin/access/auditevent/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name="access_auditevent_export"), *super().get_urls()]

    CSV_COLUMNS = [
        "occurred_at", "actor_label", "action", "target_type", "target_id",
        "target_label", "ip_address", "user_agent", "details",
    ]  # fmt: skip

    def export_csv(self, request):
        """The events matching the list's current filters and search, as CSV, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # A hand-edited export link; the list page answers the same way.
            messages.error(request, "These filters are not valid. Choose them again on the audit list, then export.")
            return HttpResponseRedirect(reverse("admin:access_auditevent_changelist"))
        events = changelist.get_queryset(request).order_by("occurred_at", "id")
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(self.CSV_COLUMNS)
            for event in events.iterator(chunk_size=2000):
                yield writer.writerow(
                    [
                        _csv_safe(value)
                        for value in (
                            event.occurred_at.isoformat(),
                            event.actor_label,
                            event.action,
                            event.target_type,
                            event.target_id,
                            event.target_label,
                            event.ip_address,
                            event.user_agent,
                            json.dumps(event.details, sort_keys=True),
                        )
                    ]
                )

        filename = f"audit-{timezone.now():%Y%m%d-%H%M%S}.csv"
        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
