"""Access requests in the admin: read-only, with their requested variants and screening flags."""

from django.contrib import admin

from access.requests.models import AccessRequest, RequestedVariant, ScreeningFlag
from portal.admin_base import ReadOnlyInline, ReadOnlyModelAdmin


class RequestedVariantInline(ReadOnlyInline):
    parent_view_permission = "access.view_accessrequest"
    model = RequestedVariant
    fields = ["variant", "decision"]


class ScreeningFlagInline(ReadOnlyInline):
    parent_view_permission = "access.view_accessrequest"
    model = ScreeningFlag
    fields = ["code", "reason", "review_round", "created_at"]


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyModelAdmin):
    list_display = ["reference", "applicant", "status", "organization_type", "country", "submitted_at", "assignee"]
    list_filter = ["status", "organization_type"]
    search_fields = ["reference", "applicant__email", "full_name", "affiliation"]
    list_select_related = ["applicant", "assignee"]
    date_hierarchy = "submitted_at"
    inlines = [RequestedVariantInline, ScreeningFlagInline]
