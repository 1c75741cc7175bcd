"""Helpers of every app's views: service errors onto a form, links back to a filtered list."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import QueryDict


def with_query(url: str, query: str) -> str:
    """Back to a list with its filters; re-encoded, so nothing but a query string rides along."""
    query = QueryDict(query or "").urlencode()
    return f"{url}?{query}" if query else url


def service_errors_to_form(form, exc: ValidationError, field_map: dict[str, str]) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            target = field_map.get(field, field)
            form.add_error(target if target in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)
