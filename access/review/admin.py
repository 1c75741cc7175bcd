"""Rejection templates in the admin, editable by reviewers."""

from django.contrib import admin

from access.review.models import RejectionTemplate
from portal.admin_base import AuditedModelAdmin


@admin.register(RejectionTemplate)
class RejectionTemplateAdmin(AuditedModelAdmin):
    """Reasons reviewers pick when rejecting. Retire one by unticking "active":
    delete is off so that the history of past edits stays readable in the audit log."""

    audit_action_prefix = "review.rejection_template"
    list_display = ["title", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["title", "text"]
