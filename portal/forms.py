"""Form pieces every app's pages share: service errors onto fields, blank choices, future dates."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone


def service_errors_to_form(form, exc: ValidationError, field_map: dict[str, str] | None = None) -> None:
    """Put a service's ``{field: [messages]}`` errors on the form's fields (``field_map`` renames
    the service's field names to the form's); anything else becomes a form-wide error, so no
    message is ever lost."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    field_map = field_map or {}
    for field, errors in exc.message_dict.items():
        target = field_map.get(field, field)
        form.add_error(target if target in form.fields else None, errors)


class ServiceErrorsMixin:
    def service_errors_add(self, exc: ValidationError) -> None:
        service_errors_to_form(self, exc)


def blank_choice(label: str, choices) -> list[tuple[str, str]]:
    return [("", label), *choices]


class RowIdField(forms.IntegerField):
    """A hidden id of the row the page showed (a license version, say), cleaned to that row;
    ``missing`` says what to do when it is not there any more."""

    widget = forms.HiddenInput

    def __init__(self, *, queryset, missing: str, **kwargs):
        super().__init__(**kwargs)
        self.queryset, self.missing = queryset, missing

    def clean(self, value):
        row = self.queryset.filter(pk=super().clean(value)).first()
        if row is None:
            raise ValidationError(self.missing)
        return row


class FutureDateField(forms.DateField):
    widget = forms.DateInput(attrs={"type": "date"})

    def validate(self, value):
        super().validate(value)
        if value is not None and value < timezone.localdate():
            raise ValidationError("Choose today or a later date.")
