"""The sandbox's OpenAI-compatible API: ``/v1/...`` for every model the caller may use, and
``/sandbox/<slug>/v1/...`` for one. Shapes, statuses and error bodies are OpenAI's
(``{"error": {"message", "type", "param", "code"}}``), so the official ``openai`` client raises
its own exception for each refusal (401 ``AuthenticationError``, 403 ``PermissionDeniedError``,
404 ``NotFoundError``).

Callers authenticate with a personal API token (``Authorization: Bearer <token>``, what the
``openai`` client sends as its ``api_key``); a logged-in browser session works for reads.
"""

from __future__ import annotations

import calendar

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from inference.sandbox.selectors import sandbox_refusal, sandbox_variants_for_user
from portal.services import api_token_authenticate


def openai_error(
    status: int, message: str, *, code: str | None, error_type: str = "invalid_request_error", param=None
) -> JsonResponse:
    response = JsonResponse(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}, status=status
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="sandbox"'
    return response


def _caller(request):
    """The authenticated user, or the 401 response to send."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, secret = header.partition(" ")
        token = api_token_authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            return None, openai_error(
                401,
                "This API token is unknown, expired or revoked. Create a personal API token on your account page "
                "and send it as 'Authorization: Bearer <token>' (the openai client's api_key).",
                code="invalid_api_key",
            )
        return token.user, None
    if request.user.is_authenticated:
        return request.user, None
    return None, openai_error(
        401,
        "No API key. Send a personal API token from your account page as 'Authorization: Bearer <token>' "
        "(the openai client's api_key).",
        code="invalid_api_key",
    )


def _model_object(variant) -> dict:
    released = variant.family.released_on
    return {
        "id": variant.slug,
        "object": "model",
        "created": calendar.timegm(released.timetuple()) if released else 0,
        "owned_by": variant.family.slug,
    }


def _get_only(request):
    if request.method != "GET":
        response = openai_error(405, f"{request.method} is not allowed here; use GET.", code="method_not_allowed")
        response["Allow"] = "GET"
        return response
    return None


@csrf_exempt
@never_cache
def models_list(request, slug: str | None = None):
    """GET /v1/models: the models the caller may use now. Under /sandbox/<slug>/v1/: that one."""
    user, refusal = _caller(request)
    refusal = refusal or _get_only(request)
    if refusal is not None:
        return refusal
    if slug is None:
        variants = sandbox_variants_for_user(user)
    else:
        variant, denied = sandbox_refusal(user, slug)
        if denied is not None:
            return openai_error(denied.status, denied.message, code=denied.code)
        variants = [variant]
    return JsonResponse({"object": "list", "data": [_model_object(variant) for variant in variants]})


@csrf_exempt
@never_cache
def model_retrieve(request, model: str, slug: str | None = None):
    """GET /v1/models/{model}: 404 if the sandbox has no such model, 403 if the caller may not use it."""
    user, refusal = _caller(request)
    refusal = refusal or _get_only(request)
    if refusal is not None:
        return refusal
    if slug is not None and model != slug:
        return openai_error(
            404, f"This base URL serves {slug!r} only; use /v1/ for your other models.", code="model_not_found"
        )
    variant, denied = sandbox_refusal(user, model)
    if denied is not None:
        return openai_error(denied.status, denied.message, code=denied.code)
    return JsonResponse(_model_object(variant))


@csrf_exempt
def endpoint_not_found(request, *args, **kwargs):
    return openai_error(404, f"No endpoint {request.path}. GET /v1/models lists your models.", code="not_found")
