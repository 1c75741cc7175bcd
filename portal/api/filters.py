"""Query-string filters of list endpoints, validated by a serializer."""

from __future__ import annotations


def query_filters(serializer_class, query_params) -> dict:
    # `?status=&variant=` (empty values) means "no filter", as docs/api.md writes the query.
    serializer = serializer_class(data={name: value for name, value in query_params.items() if value})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
