import csv
import json
import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone

from access.models import (
    AccessRequest,
    AuditEvent,
    Grant,
    LicenseAcceptance,
    LicenseVersion,
    ModelFamily,
    ModelVariant,
    RejectionTemplate,
    RequestedVariant,
    ScreeningFlag,
)
from access.services.audit import audit_event_record
from access.services.catalog import license_publish


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
        # Catalog rows are referenced by requests, grants and the audit log: unlist, never delete.
        return False


@admin.register(ModelFamily)
class ModelFamilyAdmin(AuditedModelAdmin):
    audit_action_prefix = "catalog.family"
    list_display = ["name", "slug", "released_on"]
    prepopulated_fields = {"slug": ["name"]}


# A domain as people write it after the "@": labels of letters, digits and hyphens.
_DOMAIN_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


class ModelVariantAdminForm(forms.ModelForm):
    class Meta:
        model = ModelVariant
        fields = "__all__"

    def clean_auto_approve_email_domains(self):
        # The policy matches these against applicants' email domains: a bare string or a
        # typo would silently approve the wrong people, or nobody.
        value = self.cleaned_data.get("auto_approve_email_domains") or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValidationError('Give a list of domains, e.g. ["uni.example.edu", "lab.example.org"].')
        domains = []
        for item in value:
            domain = item.strip().lower().lstrip("@.")
            if not _DOMAIN_RE.match(domain):
                raise ValidationError(f"“{item}” is not an email domain; write it as it appears after the @.")
            if domain not in domains:
                domains.append(domain)
        return domains

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("auto_approve_email_domains") and (cleaned.get("approvals_required") or 1) > 1:
            self.add_error(
                "auto_approve_email_domains",
                "Automatic approval never applies to a model that needs two approvals: "
                "clear the domains, or set approvals required to 1.",
            )
        return cleaned


@admin.register(ModelVariant)
class ModelVariantAdmin(AuditedModelAdmin):
    audit_action_prefix = "catalog.variant"
    form = ModelVariantAdminForm
    list_display = [
        "name", "slug", "family", "parameters", "training_tokens", "approvals_required",
        "auto_reject_embargoed", "sandbox", "is_listed",
    ]  # fmt: skip
    list_filter = ["family", "sandbox", "is_listed", "approvals_required", "auto_reject_embargoed"]
    search_fields = ["name", "slug"]
    fieldsets = [
        (None, {"fields": ["family", "slug", "name", "parameters", "training_tokens", "model_card"]}),
        ("Listing", {"fields": ["is_listed", "position", "sandbox"]}),
        (
            "Review policy",
            {
                "fields": ["approvals_required", "auto_approve_email_domains", "auto_reject_embargoed"],
                "description": (
                    "Decisions taken by a policy are recorded with the rule's name. Any screening flag "
                    "sends a request to a reviewer instead of approving it automatically."
                ),
            },
        ),
    ]


@admin.register(RejectionTemplate)
class RejectionTemplateAdmin(AuditedModelAdmin):
    """Reasons reviewers pick when rejecting. Retire one by unticking "active":
    delete is off so that the history of past edits stays readable in the audit log."""

    audit_action_prefix = "review.rejection_template"
    list_display = ["title", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["title", "text"]


@admin.register(LicenseVersion)
class LicenseVersionAdmin(admin.ModelAdmin):
    """Publishing is adding a version; a published text never changes."""

    list_display = ["family", "version", "title", "effective_at", "sha256", "published_by"]
    list_filter = ["family"]
    fields = ["family", "version", "title", "text", "effective_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.fields, "sha256", "published_at", "published_by"]
        return []

    def get_fields(self, request, obj=None):
        if obj is not None:
            return [*self.fields, "sha256", "published_at", "published_by"]
        return self.fields

    def has_add_permission(self, request):
        return request.user.has_perm("access.publish_license")

    def has_change_permission(self, request, obj=None):
        # Reviewers may open a version to read it; nobody may edit one.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            raise PermissionDenied("Published license versions cannot be changed; publish a new version.")
        try:
            published = license_publish(
                family=obj.family,
                version=obj.version,
                title=obj.title,
                text=obj.text,
                effective_at=obj.effective_at,
                actor=request.user,
                request=request,
            )
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            raise
        obj.pk = published.pk
        obj.sha256 = published.sha256
        messages.info(
            request,
            f"Published {published}. Grants that accepted an earlier version need a new acceptance "
            f"from {published.effective_at:%Y-%m-%d %H:%M} UTC.",
        )


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


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """For rows whose state changes only through services (which check the rules and
    write the audit events): the admin shows them and never adds, edits or deletes."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        # Part of the request: whoever may read the request reads these with it.
        return request.user.has_perm("access.view_accessrequest")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RequestedVariantInline(_ReadOnlyInline):
    model = RequestedVariant
    fields = ["variant", "decision"]


class ScreeningFlagInline(_ReadOnlyInline):
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
