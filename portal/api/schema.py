"""The API's one error body, as the OpenAPI schema documents it (``error_responses``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="snake_case, stable: branch on it.")
    message = serializers.CharField(help_text="What happened and what to do.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: messages per field.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_MEANINGS = {
    400: "Invalid input; `fields` lists what to fix.",
    403: "Authenticated but not allowed.",
    404: "Absent, or not visible to you.",
    409: "Conflicts with the current state (for example, already decided).",
}


def error_responses(*statuses: int) -> dict:
    """extend_schema ``responses`` entries for the error statuses an endpoint can answer."""
    return {status: OpenApiResponse(ErrorSerializer, description=_ERROR_MEANINGS[status]) for status in statuses}
