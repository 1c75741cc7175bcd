"""One error body for the whole API (docs/api.md):
``{"error": {"code", "message", "fields"?}}`` with the matching status."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import csrf
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from portal.errors import LimitReached, StateConflict

logger = logging.getLogger(__name__)

_DEFAULT_MESSAGES = {
    400: "The request is not valid. Fix the fields listed and send it again.",
    401: "Authentication is required. Send 'Authorization: Bearer <token>' with a personal API token.",
    403: "You are not allowed to do this.",
    404: "Not found, or not visible to you.",
    405: "This method is not allowed here.",
    409: "The request conflicts with the current state of the resource.",
    410: "This has expired.",
    429: "Too many requests. Wait and try again.",
}


class ApiError(exceptions.APIException):
    """Raise from a view to answer with a specific status, code and message."""

    def __init__(self, *, status_code: int, code: str, message: str, fields: dict | None = None):
        self.status_code = status_code
        self.code = code
        self.message = message
        self.fields = fields
        super().__init__(detail=message, code=code)


class Conflict(ApiError):
    def __init__(self, message: str, code: str = "conflict"):
        super().__init__(status_code=status.HTTP_409_CONFLICT, code=code, message=message)


class TooManyRequests(ApiError):
    def __init__(self, message: str, *, code: str, retry_after_seconds: int):
        super().__init__(status_code=status.HTTP_429_TOO_MANY_REQUESTS, code=code, message=message)
        self.wait = retry_after_seconds  # DRF's exception handler sends it as Retry-After


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten_fields(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, value in detail.items():
            if isinstance(value, dict):
                for sub, messages in _flatten_fields(value).items():
                    fields[f"{name}.{sub}"] = messages
            elif isinstance(value, list):
                fields[name] = [str(item) for item in _flatten_list(value)]
            else:
                fields[name] = [str(value)]
        return fields
    return {"non_field_errors": [str(item) for item in _flatten_list(detail if isinstance(detail, list) else [detail])]}


def _flatten_list(values):
    for value in values:
        if isinstance(value, list):
            yield from _flatten_list(value)
        elif isinstance(value, dict):
            for name, messages in _flatten_fields(value).items():
                for message in messages:
                    yield f"{name}: {message}"
        else:
            yield value


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        # Keep a specific message ("No model named 'x'...") when the view gave one.
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, StateConflict):
        exc = Conflict(exc.message, code=exc.code)
    elif isinstance(exc, LimitReached):
        exc = TooManyRequests(exc.message, code=exc.code, retry_after_seconds=exc.retry_after_seconds)

    response = exception_handler(exc, context)
    if response is None:
        return None  # a real crash: Django's handler500 logs it and answers JSON

    status_code = response.status_code
    if isinstance(exc, exceptions.MethodNotAllowed):
        # DRF adds the Allow header after this handler; the message names the same methods.
        view = context.get("view")
        allowed = [method for method in getattr(view, "allowed_methods", ()) if method not in ("HEAD", "OPTIONS")]
        body = error_body("method_not_allowed", method_not_allowed_message(context["request"].method, allowed))
    elif isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        body = error_body("invalid", _DEFAULT_MESSAGES[400], fields)
    else:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        if not isinstance(code, str):
            code = "error"
        detail = getattr(exc, "detail", None)
        message = str(detail) if isinstance(detail, str) and detail else _DEFAULT_MESSAGES.get(status_code, str(exc))
        body = error_body(code, message)
    response.data = body
    return response


def method_not_allowed_message(method: str, allowed) -> str:
    """Names the methods to use instead, as the Allow header does."""
    if not allowed:
        return f"Method {method} is not allowed here."
    return f"Method {method} is not allowed here; use {', '.join(allowed)}."


def json_error_response(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def api_not_found(request, exception=None):
    return json_error_response(404, "not_found", _DEFAULT_MESSAGES[404])


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: the API's error body under /api/, Django's page everywhere else."""
    if request.path.startswith("/api/"):
        return json_error_response(
            403,
            "csrf_failed",
            "CSRF check failed. Send 'Authorization: Bearer <token>' with a personal API token, or, from a "
            "logged-in browser session, the X-CSRFToken header with the csrftoken cookie's value.",
        )
    return csrf.csrf_failure(request, reason=reason)


def api_server_error(request):
    return json_error_response(
        500, "server_error", "Something went wrong on our side. It has been logged; try again later."
    )
