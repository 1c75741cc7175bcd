"""The answer while the database is unreachable (restarting, failing over, out of connections):
503 with Retry-After, which download tools and API clients retry, instead of a 500 that says the
request itself is at fault. Built without templates, sessions or the database, none of which can
be counted on then. handler500 (portal.views.server_error) asks here first."""

from __future__ import annotations

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

RETRY_AFTER_SECONDS = 30
MESSAGE = "The portal is briefly unavailable (its database cannot be reached). Try again in a minute."


def database_unavailable() -> bool:
    """Whether the exception being handled means the database could not be reached or used:
    connection refused or lost (OperationalError), or a connection already closed (InterfaceError)."""
    return isinstance(sys.exc_info()[1], OperationalError | InterfaceError)


def _openai_path(path: str) -> bool:
    return path.startswith("/v1/") or (path.startswith("/sandbox/") and "/v1/" in path)


def service_unavailable(request) -> HttpResponse:
    if _openai_path(request.path):
        # The sandbox's OpenAI-compatible API answers in OpenAI's error shape (docs/api.md).
        body = {"message": MESSAGE, "type": "server_error", "param": None, "code": "service_unavailable"}
        response = JsonResponse({"error": body}, status=503)
    elif request.path.startswith("/api/"):
        response = JsonResponse({"error": {"code": "service_unavailable", "message": MESSAGE}}, status=503)
    else:
        # The site's pages too: rendering one needs the session and the user, so the database.
        response = HttpResponse(MESSAGE + "\n", status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
