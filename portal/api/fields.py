"""Serializer fields every API input shares."""

from __future__ import annotations

from rest_framework import serializers

# Ids are PostgreSQL bigints at most: a larger number names no row (and would not fit the query).
_LARGEST_ID = 2**63 - 1
_JSON_TYPES = {"bool": "true or false", "float": "a fraction", "str": "text", "list": "an array", "dict": "an object"}


class RowIdField(serializers.PrimaryKeyRelatedField):
    """The id of a row (a license version, say), cleaned to that row. A whole number, or the
    same digits as a string; a boolean, a fraction (``12.5`` would otherwise find row 12), a
    list or a number past the largest id is refused by name, never looked up. (The parser has
    already refused numbers that are not finite, such as ``1e400``.)"""

    default_error_messages = {"incorrect_type": "Send the id as a whole number, e.g. 12, not {data_type}."}

    def to_internal_value(self, data):
        if isinstance(data, str) and data.isascii() and data.isdigit() and len(data) <= 19:
            data = int(data)
        elif isinstance(data, float) and data.is_integer():  # 12.0, as some JSON encoders write 12
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=_JSON_TYPES.get(type(data).__name__, "this"))
        if not 0 < data <= _LARGEST_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)
