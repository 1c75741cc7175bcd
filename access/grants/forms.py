"""Web forms of the grant pages: accepting a license, and the reviewers' grant filter, grant and
revoke/suspend/reinstate forms. Rules stay in the grant services.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from access.catalog.models import LicenseVersion, ModelVariant
from access.grants.models import Grant, GrantStatus
from access.grants.services import end_of_day_after, grant_accept_license, grant_end_day_check
from portal.forms import FutureDateField, RowIdField, ServiceErrorsMixin, blank_choice
from portal.models import User


class LicenseAcceptForm(ServiceErrorsMixin, forms.Form):
    license_id = RowIdField(
        queryset=LicenseVersion.objects.select_related("family"),
        missing="Reload the page and read the license shown there.",
    )
    accept = forms.BooleanField(
        label="I have read this license and accept its terms.",
        error_messages={"required": "Tick the box to accept the license."},
    )

    def accept_for(self, *, grant: Grant, user, request) -> Grant | None:
        try:
            return grant_accept_license(
                grant=grant, user=user, license_version=self.cleaned_data["license_id"], request=request
            )
        except ValidationError as exc:
            self.service_errors_add(exc)
            return None


class GrantFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=blank_choice("Any status", GrantStatus.choices))
    email = forms.CharField(required=False, max_length=254, label="Email contains")
    variant = forms.ChoiceField(required=False, label="Model")

    def __init__(self, *args, variants=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].choices = blank_choice("Any model", [(v.slug, v.name) for v in variants])

    def filters(self) -> dict[str, str]:
        cleaned = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return {name: value.strip() if isinstance(value, str) else value for name, value in cleaned.items() if value}


class GrantCreateForm(forms.Form):
    """A grant without a request (e.g. a collaborator vetted elsewhere)."""

    email = forms.EmailField(label="Researcher's email")
    variant = forms.ModelChoiceField(
        queryset=ModelVariant.objects.select_related("family"),
        to_field_name="slug",
        label="Model",
        empty_label="Choose a model",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=settings.REVIEW_TEXT_MAX_CHARS,
        help_text="Why access is granted without a request.",
    )
    expires_on = FutureDateField(required=False, label="Access ends on")

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        return grant_end_day_check(day) if day else day

    def clean_email(self):
        email = self.cleaned_data["email"]
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise ValidationError(f"No account has the email {email}; the researcher must sign up first.")
        self.user = user
        return email

    def expires_at(self) -> dt.datetime | None:
        day = self.cleaned_data.get("expires_on")
        return end_of_day_after(day) if day else None


class GrantActionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=settings.REVIEW_TEXT_MAX_CHARS)
    block_new_requests = forms.BooleanField(required=False)
    query = forms.CharField(required=False)
