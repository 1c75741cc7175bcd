"""Editing the catalog in the admin: families, variants (with their policies) and license versions,
every save audited. A license version is published through ``license_publish``, never edited.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from access.catalog.models import LicenseVersion, ModelFamily, ModelVariant
from access.catalog.services import license_publish
from portal.admin_base import AuditedModelAdmin


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
        "auto_reject_embargoed", "sandbox", "fingerprint", "is_listed",
    ]  # fmt: skip
    list_filter = ["family", "sandbox", "fingerprint", "is_listed", "approvals_required", "auto_reject_embargoed"]
    search_fields = ["name", "slug"]
    fieldsets = [
        (None, {"fields": ["family", "slug", "name", "parameters", "training_tokens", "model_card"]}),
        ("Listing", {"fields": ["is_listed", "position", "sandbox"]}),
        (
            "Downloads",
            {
                "fields": ["fingerprint", "meta_folder"],
                "description": (
                    "Links made while this is on send each researcher their own marked copy of the weight shards "
                    "(see the README's Fingerprints section); links made after turning it off send the files as "
                    "published."
                ),
            },
        ),
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
