"""Form fields for catalog objects that other domains' forms share."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from access.catalog.models import LicenseVersion


class LicenseIdField(forms.IntegerField):
    """The hidden id of the license version shown on the page, resolved to the row."""

    widget = forms.HiddenInput

    def clean(self, value):
        license_id = super().clean(value)
        license_version = LicenseVersion.objects.select_related("family").filter(pk=license_id).first()
        if license_version is None:
            raise ValidationError("Reload the page and read the license shown there.")
        return license_version
