"""Helpers of every app's views."""

from __future__ import annotations

from django.http import QueryDict


def with_query(url: str, query: str) -> str:
    """Back to a list with its filters; re-encoded, so nothing but a query string rides along."""
    query = QueryDict(query or "").urlencode()
    return f"{url}?{query}" if query else url

