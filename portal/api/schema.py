"""The API's one error body, as the OpenAPI schema documents it (``error_responses``), and the schema
class that documents the errors every endpoint of a kind can answer (``PortalAutoSchema``), so the
schema lists every status a client can get. tests/test_schema_fuzzing.py holds the API to it."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated


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
    401: "Missing, unknown, expired or revoked credentials: send `Authorization: Bearer <personal API token>`.",
    403: "Authenticated but not allowed.",
    404: "Absent, or not visible to you.",
    409: "Conflicts with the current state (for example, already decided).",
    410: "Expired.",
    429: "A limit was reached; `Retry-After` says how many seconds to wait.",
}
_LIST_MEANINGS = {
    400: "Invalid input, e.g. `page` or `page_size` out of range; `fields` lists what to fix.",
    404: "No such page: `page` is past the last page.",
}
# A browser session must send its CSRF token with every unsafe request, or gets a 403.
_CSRF_MEANING = "Not allowed; from a browser session, also a state-changing request without its CSRF token."
# Permissions that refuse no authenticated caller: an endpoint with only these answers no 403 of its own.
_PERMISSIONS_ANYONE_SIGNED_IN_PASSES = (AllowAny, IsAuthenticated)


def _error(status: int, description: str | None = None) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description or _ERROR_MEANINGS[status])


def error_responses(*statuses: int) -> dict:
    """extend_schema ``responses`` entries for the error statuses an endpoint can answer."""
    return {status: _error(status) for status in statuses}


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the errors an endpoint answers whatever its view declares:

    - 401 on every endpoint: a bad token is refused even where no login is needed;
    - 403 where a permission can refuse a signed-in caller (reviewers only, ...), and on state-changing
      requests that a browser session may send (CSRF);
    - 404 where the path names an object (it may be absent or not the caller's);
    - 400 and 404 on paginated lists (``page`` and ``page_size`` out of range, a page past the last).

    What a view declares itself (``extend_schema(responses=...)``) wins."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, description in self._implied_errors().items():
            responses.setdefault(str(status), self._get_response_for_code(_error(status, description), str(status)))
        return dict(sorted(responses.items()))

    def _implied_errors(self) -> dict[int, str | None]:
        view = self.view
        errors: dict[int, str | None] = {}
        if getattr(view, "authentication_classes", None):
            errors[401] = None
        permissions = getattr(view, "permission_classes", None) or []
        if any(not issubclass(permission, _PERMISSIONS_ANYONE_SIGNED_IN_PASSES) for permission in permissions):
            errors[403] = None
        elif self.method not in SAFE_METHODS and any(
            issubclass(auth, SessionAuthentication) for auth in getattr(view, "authentication_classes", ())
        ):
            errors[403] = _CSRF_MEANING
        if "{" in self.path:
            errors[404] = None
        if self.method == "GET" and self._is_list_view() and self._get_paginator() is not None:
            errors.update(_LIST_MEANINGS)
        return errors
