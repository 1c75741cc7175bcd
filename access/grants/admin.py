"""Grants and license acceptances in the admin: read-only; reviewers change grants on the review pages."""

from django.contrib import admin

from access.grants.models import Grant, LicenseAcceptance
from portal.admin_base import ReadOnlyModelAdmin


@admin.register(Grant)
class GrantAdmin(ReadOnlyModelAdmin):
    list_display = ["user", "variant", "status", "created_at", "activated_at", "expires_at", "ended_at"]
    list_filter = ["status", "variant", "blocks_new_requests"]
    search_fields = ["user__email", "variant__slug", "request__reference"]
    list_select_related = ["user", "variant"]


@admin.register(LicenseAcceptance)
class LicenseAcceptanceAdmin(ReadOnlyModelAdmin):
    list_display = ["accepted_at", "user", "license", "license_sha256", "ip_address"]
    list_filter = ["license"]
    search_fields = ["user__email", "license_sha256", "ip_address"]
    list_select_related = ["user", "license__family"]
    date_hierarchy = "accepted_at"
