"""Form pieces every app's pages share: service errors onto fields, blank choices, future dates."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone


class ServiceErrorsMixin:
    def service_errors_add(self, exc: ValidationError) -> None:
        """Put a service's ``{field: [messages]}`` errors on the matching fields;
        anything else becomes a form-wide error, so no message is ever lost."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for field, errors in exc.message_dict.items():
            self.add_error(field if field in self.fields else None, errors)


def blank_choice(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


class FutureDateField(forms.DateField):
    widget = forms.DateInput(attrs={"type": "date"})

    def validate(self, value):
        super().validate(value)
        if value is not None and value < timezone.localdate():
            raise ValidationError("Choose today or a later date.")
