"""Sandbox jobs and quota overrides in the admin: read-only. Jobs change state only through the
services (submit, start, end, cancel); quotas are set by reviewers on the review pages, whose
service writes the audit event."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from inference.sandbox.models import SandboxJob, SandboxQuota
from portal.admin_base import ReadOnlyModelAdmin


@admin.register(SandboxJob)
class SandboxJobAdmin(ReadOnlyModelAdmin):
    list_display = [
        "created_at", "user", "variant", "endpoint", "source", "status", "prompt_tokens", "completion_tokens",
        "error_code",
    ]  # fmt: skip
    list_filter = ["status", "variant", "source", "endpoint", "stream"]
    search_fields = ["user__email", "id", "error_code", "worker"]
    list_select_related = ["user", "variant"]
    date_hierarchy = "created_at"
    list_per_page = 100


@admin.register(SandboxQuota)
class SandboxQuotaAdmin(ReadOnlyModelAdmin):
    list_display = [
        "user", "concurrent_requests", "requests_per_minute", "tokens_per_day", "updated_by", "updated_at", "change_link",
    ]  # fmt: skip
    search_fields = ["user__email", "note"]
    list_select_related = ["user", "updated_by"]

    @admin.display(description="Change")
    def change_link(self, quota):
        url = reverse("review-sandbox-user", args=[quota.user_id])
        return format_html('<a href="{}#quota">on the review page</a>', url)
