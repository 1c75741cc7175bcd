"""The sandbox's OpenAI-compatible API: ``/v1/...`` for every model the caller may use, and
``/sandbox/<slug>/v1/...`` for one. Shapes, statuses and error bodies are OpenAI's
(``{"error": {"message", "type", "param", "code"}}``), so the official ``openai`` client raises
its own exception for each refusal (401 ``AuthenticationError``, 403 ``PermissionDeniedError``,
404 ``NotFoundError``).

Callers authenticate with a personal API token (``Authorization: Bearer <token>``, what the
``openai`` client sends as its ``api_key``); a logged-in browser session works for reads.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import threading
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from access.audit.services import request_client_ip
from access.distribution.services import client_network
from inference.sandbox.checkpoints import CheckpointFetchError
from inference.sandbox.models import SandboxJob
from inference.sandbox.openai_params import (
    GenerationRequest,
    ParamError,
    chat_request_parse,
    completion_request_parse,
    request_body_parse,
)
from inference.sandbox.openai_responses import ResponseBuilder, error_body
from inference.sandbox.selectors import sandbox_access, sandbox_refusal, sandbox_variants_for_user
from inference.sandbox.services import (
    SandboxLimitError,
    sandbox_job_cancel,
    sandbox_job_check_alive,
    sandbox_job_submit,
)
from inference.sandbox.tokenizers import prompt_ids, sandbox_tokenizer
from inference.sandbox.transport import END_TYPES, transport
from portal.services import api_token_authenticate

logger = logging.getLogger(__name__)

QUIET_CHECK_SECONDS = 1.0  # after this long without an event, look whether the job's worker is alive


def openai_error(
    status: int, message: str, *, code: str | None, error_type: str = "invalid_request_error", param=None
) -> JsonResponse:
    response = JsonResponse(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}, status=status
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="sandbox"'
    return response


def api_caller(request):
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
    user, refusal = api_caller(request)
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
    user, refusal = api_caller(request)
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


# --- Generation: POST /v1/completions and /v1/chat/completions ------------------------------------


def csrf_refusal(request):
    """A browser session (the playground) must pass Django's CSRF check; bearer tokens need none."""
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


def _admit(request, slug: str | None, chat: bool):
    """Sync part of a generation request: who, what, whether allowed; the job or the refusal."""
    user, refusal = api_caller(request)
    if refusal is not None:
        return refusal
    if request.method != "POST":
        response = openai_error(405, f"{request.method} is not allowed here; use POST.", code="method_not_allowed")
        response["Allow"] = "POST"
        return response
    if not request.META.get("HTTP_AUTHORIZATION") and csrf_refusal(request) is not None:
        return openai_error(403, "CSRF check failed: reload the page.", code="csrf_failed")
    try:
        body = request_body_parse(request.body)
        parse = chat_request_parse if chat else completion_request_parse
        generation = parse(body, model=slug)
        variant, grant, denied = sandbox_access(user, generation.model)
        if denied is not None:
            return openai_error(denied.status, denied.message, code=denied.code, param="model")
        source = "playground" if request.headers.get("X-Sandbox-Client") == "playground" else "api"
        network = client_network(request_client_ip(request))
        job, headers = sandbox_job_submit(
            user=user, variant=variant, grant=grant, generation=generation, source=source, network=network,
            prompt_tokens=lambda: _prompt_tokens(variant, generation),
        )  # fmt: skip
    except CheckpointFetchError as exc:
        return model_unavailable(exc)
    except ParamError as exc:
        return openai_error(400, exc.message, code=exc.code, param=exc.param)
    except SandboxLimitError as exc:
        response = openai_error(exc.status, exc.message, code=exc.code, error_type="rate_limit_exceeded"
                                if exc.status == 429 else "server_error")  # fmt: skip
        for name, value in exc.headers.items():
            response[name] = value
        return response
    return job, headers, generation


def _prompt_tokens(variant, generation: GenerationRequest) -> int:
    """The request's prompt tokens (times n), read as the worker will read them; a prompt over the
    model's cap is refused here, before it is queued or counted."""
    tokenizer = sandbox_tokenizer(variant)
    cap = variant.sandbox_max_prompt_tokens or settings.SANDBOX_MAX_PROMPT_TOKENS
    total = 0
    for index, prompt in enumerate(generation.prompts):
        length = len(prompt_ids(tokenizer, prompt))
        if length > cap:
            raise ParamError(
                f"prompt {index} is {length} tokens long; {variant.slug} takes at most {cap} in the sandbox.",
                param="prompt", code="context_length_exceeded",
            )  # fmt: skip
        total += length
    return total * generation.n


def model_unavailable(exc: Exception) -> JsonResponse:
    logger.warning("sandbox tokenizer unavailable: %s", exc)
    response = openai_error(
        503, f"This model is not available in the sandbox right now: {exc}", code="model_unavailable",
        error_type="server_error",
    )  # fmt: skip
    response["Retry-After"] = "30"
    return response


def _builder(job: SandboxJob, generation: GenerationRequest) -> ResponseBuilder:
    return ResponseBuilder(
        job_id=job.public_id, model=generation.model, created=int(job.created_at.timestamp()), chat=generation.chat,
        choices=len(generation.prompts) * generation.n, logprobs=generation.logprobs,
        include_usage=generation.include_usage,
    )  # fmt: skip


def _cancel_abandoned(job_id) -> None:
    """The client went away: stop its job (in a thread of its own, so it runs even from a
    cancelled coroutine)."""

    def cancel():
        from django.db import close_old_connections

        try:
            job = SandboxJob.objects.filter(pk=job_id).first()
            if job is not None and job.is_live:
                sandbox_job_cancel(job=job, actor=None)
        except Exception:  # nobody waits on this thread: say what went wrong, the sweep ends the job
            logger.exception("cancelling abandoned sandbox job %s failed", job_id)
        finally:
            close_old_connections()

    threading.Thread(target=cancel, daemon=True).start()


def _give_up_at() -> float:
    # Past this the job must have ended one way or another; a last guard against waiting forever.
    return time.monotonic() + settings.SANDBOX_QUEUE_TIMEOUT_SECONDS + settings.SANDBOX_JOB_TIME_LIMIT_SECONDS + 60


_LOST = {"type": "error", "status": 500, "code": "worker_lost", "message": "The sandbox lost this request; try again."}


async def _events_async(job_id):
    channel = transport()
    cursor, give_up = None, _give_up_at()
    try:
        while True:
            events, cursor = await channel.aread(job_id, cursor, QUIET_CHECK_SECONDS)
            if not events:
                if time.monotonic() > give_up:
                    yield _LOST
                    return
                lost = await sync_to_async(sandbox_job_check_alive)(job_id=job_id)
                if lost is not None:
                    yield lost
                    return
                continue
            for event in events:
                yield event
                if event["type"] in END_TYPES:
                    return
    finally:
        await channel.aclose()


def _events_sync(job_id):
    from django.db import close_old_connections

    channel = transport()
    cursor, give_up = None, _give_up_at()
    while True:
        events, cursor = channel.read(job_id, cursor, QUIET_CHECK_SECONDS)
        if not events:
            if time.monotonic() > give_up:
                yield _LOST
                return
            lost = sandbox_job_check_alive(job_id=job_id)
            close_old_connections()
            if lost is not None:
                yield lost
                return
            continue
        for event in events:
            yield event
            if event["type"] in END_TYPES:
                return


def _error_response(event: dict) -> JsonResponse:
    return JsonResponse({"error": error_body(event)}, status=event["status"])


def _finish(response: HttpResponse, job: SandboxJob, headers: dict) -> HttpResponse:
    for name, value in headers.items():
        response[name] = value
    response["X-Sandbox-Job"] = str(job.pk)
    response["Cache-Control"] = "no-cache, no-store"
    return response


async def _generate(request, slug: str | None, *, chat: bool):
    admitted = await sync_to_async(_admit)(request, slug, chat)
    if isinstance(admitted, HttpResponse):
        return admitted
    job, headers, generation = admitted
    builder = _builder(job, generation)
    events = _events_async(job.pk)
    finished = False
    try:
        if not generation.stream:
            async for event in events:
                if event["type"] == "error":
                    finished = True
                    return _finish(_error_response(event), job, headers)
                builder.add(event)
            finished = True
            return _finish(JsonResponse(builder.response()), job, headers)
        # Headers wait for the first event, so a request the worker refuses (a prompt too long for
        # the model) still gets its 400 rather than an error inside a 200 stream.
        first = await anext(events)
        if first["type"] == "error":
            finished = True
            return _finish(_error_response(first), job, headers)
    except (asyncio.CancelledError, GeneratorExit):
        _cancel_abandoned(job.pk)
        raise
    finally:
        if not finished and not generation.stream:
            _cancel_abandoned(job.pk)
    if isinstance(request, ASGIRequest):
        content = _sse_async(builder, first, events, job.pk)
    else:
        await events.aclose()
        content = _sse_sync(builder, first, job.pk)
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["X-Accel-Buffering"] = "no"  # nginx passes each frame on at once
    return _finish(response, job, headers)


async def _sse_async(builder: ResponseBuilder, first: dict, events, job_id):
    ended = False
    try:
        for frame in builder.sse_start() + builder.sse_frames(first):
            yield frame
        ended = first["type"] in END_TYPES
        async for event in events:
            for frame in builder.sse_frames(event):
                yield frame
            ended = event["type"] in END_TYPES
    finally:
        if not ended:
            _cancel_abandoned(job_id)  # the client disconnected mid-stream


def _sse_sync(builder: ResponseBuilder, first: dict, job_id):
    """The same stream for a WSGI server (runserver, tests' live server): a sync generator, whose
    close() on a client's disconnect cancels the job."""
    ended = False
    try:
        yield from builder.sse_start()
        yield from builder.sse_frames(first)
        ended = first["type"] in END_TYPES
        if ended:
            return
        # The first event was already read: skip it by reading from where it ended.
        for index, event in enumerate(_events_sync(job_id)):
            if index == 0:
                continue
            yield from builder.sse_frames(event)
            ended = event["type"] in END_TYPES
    finally:
        if not ended:
            _cancel_abandoned(job_id)


@csrf_exempt
@never_cache
async def completions(request, slug: str | None = None):
    """POST /v1/completions: one choice per prompt and n; streamed as server-sent events on request."""
    return await _generate(request, slug, chat=False)


@csrf_exempt
@never_cache
async def chat_completions(request, slug: str | None = None):
    """POST /v1/chat/completions: the conversation through the documented template (docs/api.md)."""
    return await _generate(request, slug, chat=True)
