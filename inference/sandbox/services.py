"""Every change of a sandbox job's state, and of a user's sandbox quota.

A job is admitted (``sandbox_job_submit``: access, per-variant caps, the user's quotas, the queue's
length), started by exactly one worker (``sandbox_job_start``: an atomic queued -> running, so a
redelivered task never runs a job twice), and ended exactly once (``sandbox_job_succeed`` or
``sandbox_job_end``, each a conditional update of a live job). Whoever ends a job appends the last
event of its stream, so a waiting client always hears how it ended.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access.audit.services import audit_event_record
from access.distribution.services import grant_leak_check, grant_leak_serialized
from inference.sandbox.models import LIVE_STATUSES, JobEndpoint, JobStatus, SandboxJob, SandboxQuota
from inference.sandbox.openai_params import GenerationRequest, ParamError
from inference.sandbox.selectors import SandboxUsage, sandbox_access, sandbox_queue_length, sandbox_usage
from inference.sandbox.transport import transport

logger = logging.getLogger(__name__)

RUN_TASK = "inference.sandbox_job_run"
QUEUE_FULL_RETRY_SECONDS = 5


class SandboxLimitError(Exception):
    """A request over a limit: ``status`` 429 or 503, OpenAI's ``code``, and the headers to send
    (Retry-After, x-ratelimit-*, x-should-retry)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def ratelimit_headers(usage: SandboxUsage, *, now: dt.datetime | None = None, admitted: int = 0) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers: requests per minute and tokens per day, with resets."""
    now = now or timezone.now()
    if usage.oldest_request_last_minute is not None:
        requests_reset = max(0.0, (usage.oldest_request_last_minute + dt.timedelta(minutes=1) - now).total_seconds())
    else:
        requests_reset = 0.0
    tokens_reset = max(0.0, (usage.day_ends_at - now).total_seconds())
    return {
        "x-ratelimit-limit-requests": str(usage.limits.requests_per_minute),
        "x-ratelimit-remaining-requests": str(max(0, usage.requests_left - admitted)),
        "x-ratelimit-reset-requests": f"{requests_reset:.0f}s",
        "x-ratelimit-limit-tokens": str(usage.limits.tokens_per_day),
        "x-ratelimit-remaining-tokens": str(usage.tokens_left),
        "x-ratelimit-reset-tokens": f"{tokens_reset:.0f}s",
    }


def _completion_budget(generation: GenerationRequest) -> int:
    return generation.max_tokens * generation.n * len(generation.prompts)


def _admission_check(
    *, user, generation: GenerationRequest, prompt_tokens: int | Callable[[], int], now: dt.datetime
) -> tuple[dict[str, str], int]:
    """The rate-limit headers to answer with and the request's prompt tokens, or SandboxLimitError.
    ``prompt_tokens`` may be a function that counts them (tokenizing the prompts): it is called only
    once the limits that need no count (concurrency, requests per minute) let the request through."""
    usage = sandbox_usage(user, now=now)
    headers = ratelimit_headers(usage, now=now)
    limits = usage.limits
    if usage.live_requests >= limits.concurrent_requests:
        raise SandboxLimitError(
            429,
            "concurrent_requests_exceeded",
            f"You have {usage.live_requests} sandbox requests running; your limit is {limits.concurrent_requests} "
            "at a time. Wait for one to finish.",
            {**headers, "Retry-After": "1"},
        )
    if usage.requests_left <= 0:
        retry = max(1, math.ceil(float(headers["x-ratelimit-reset-requests"].rstrip("s"))))
        raise SandboxLimitError(
            429,
            "rate_limit_exceeded",
            f"Your limit is {limits.requests_per_minute} sandbox requests per minute. Try again in {retry} s.",
            {**headers, "Retry-After": str(retry)},
        )
    # Prompt tokens count as generated ones do: reading (and scoring) them is most of an evaluation's work.
    if callable(prompt_tokens):
        prompt_tokens = prompt_tokens()
    budget = prompt_tokens + _completion_budget(generation)
    if usage.tokens_left <= 0 or budget > usage.tokens_left:
        retry = max(1, math.ceil((usage.day_ends_at - now).total_seconds()))
        if usage.tokens_left <= 0:
            message = (
                f"You have used today's sandbox budget of {limits.tokens_per_day:,} tokens; it renews at "
                f"{usage.day_ends_at:%H:%M} UTC."
            )
        else:
            message = (
                f"This request may use {budget:,} tokens ({prompt_tokens:,} of prompts, and up to "
                f"{budget - prompt_tokens:,} generated: max_tokens x n x prompts) but {usage.tokens_left:,} of today's "
                "budget are left. Send fewer or shorter prompts, or ask for fewer tokens."
            )
        raise SandboxLimitError(
            429, "insufficient_quota", message, {**headers, "Retry-After": str(retry), "x-should-retry": "false"}
        )
    if sandbox_queue_length() >= settings.SANDBOX_QUEUE_LIMIT:
        raise SandboxLimitError(
            503,
            "queue_full",
            "The sandbox is busy: too many requests are waiting. Try again in a few seconds.",
            {**headers, "Retry-After": str(QUEUE_FULL_RETRY_SECONDS)},
        )
    return ratelimit_headers(usage, now=now, admitted=1), prompt_tokens


@transaction.atomic
def sandbox_job_submit(
    *, user, variant, grant, generation: GenerationRequest, source: str = "api", network: str = "",
    prompt_tokens: int | Callable[[], int] = 0,
) -> tuple[SandboxJob, dict[str, str]]:  # fmt: skip
    """Admit one /v1/ request as a queued job and send it to the sandbox queue once committed;
    with the rate-limit headers to answer with. Raises ParamError (a per-variant cap) or
    SandboxLimitError (a quota, or the queue is full). ``network``: the client's, which the
    leak rule counts with the networks the grant's download links were used from.
    ``prompt_tokens``: the prompts' tokens times n (or a function counting them, which may raise
    ParamError for a prompt too long), held against the daily budget while the job is live (the
    worker records what it ran)."""
    max_tokens_cap = variant.sandbox_max_tokens or settings.SANDBOX_MAX_TOKENS
    if generation.max_tokens_open:
        generation = dataclasses.replace(generation, max_tokens=min(generation.max_tokens, max_tokens_cap))
    if generation.max_tokens > max_tokens_cap:
        raise ParamError(f"'max_tokens' may be at most {max_tokens_cap} for {variant.slug}.", param="max_tokens")
    # One user's admissions take turns (their user row is the lock), so two requests at once
    # cannot both take the last concurrent slot or the last of the budget.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    now = timezone.now()
    headers, prompt_tokens = _admission_check(user=user, generation=generation, prompt_tokens=prompt_tokens, now=now)
    job = SandboxJob(
        user=user,
        grant=grant,
        variant=variant,
        endpoint=JobEndpoint.CHAT if generation.chat else JobEndpoint.COMPLETIONS,
        source=source,
        stream=generation.stream,
        params={
            "max_tokens": generation.max_tokens,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "n": generation.n,
            "stop": list(generation.stop),
            "seed": generation.seed,
            "logprobs": generation.logprobs,
            "echo": generation.echo,
            "include_usage": generation.include_usage,
            "user": generation.user,
        },
        prompts=[p if isinstance(p, str) else list(p) for p in generation.prompts],
        completion_tokens_reserved=_completion_budget(generation),
        prompt_tokens=prompt_tokens,
        created_at=now,
        network=network,
    )
    # The user, grant and variant were just read; their existence checks would only cost queries.
    job.full_clean(exclude=["user", "grant", "variant"], validate_unique=False)
    job.save(force_insert=True)
    _leak_rule_feed(grant_id=grant.pk, network=network, since=now, job_id=job.pk)
    transaction.on_commit(lambda: current_app.send_task(RUN_TASK, args=[str(job.pk)], queue=settings.SANDBOX_QUEUE))
    return job, headers


def _leak_rule_feed(*, grant_id: int, network: str, since, job_id) -> None:
    """A network new to the grant's sandbox use within the leak window may cross the leak limit
    (counted with the networks of its download links): check it, as the gateway does for a
    network new to its links. The job still runs; the rule suspends the links and alerts the
    reviewers, who decide about the grant."""
    if not network:
        return
    window_start = since - dt.timedelta(hours=settings.DOWNLOAD_LEAK_WINDOW_HOURS)
    seen = (
        SandboxJob.objects.filter(grant_id=grant_id, network=network, created_at__gte=window_start)
        .exclude(pk=job_id)
        .exists()
    )
    if not seen:
        with grant_leak_serialized(grant_id):
            grant_leak_check(grant_id=grant_id, network=network)


def sandbox_grant_networks(grant_id: int, since) -> list[str]:
    """The networks the grant was used from in the sandbox since ``since``, for the leak rule."""
    return list(
        SandboxJob.objects.filter(grant_id=grant_id, created_at__gte=since)
        .exclude(network="")
        .order_by()
        .values_list("network", flat=True)
        .distinct()
    )


def _error_event(*, http_status: int, code: str, message: str) -> dict:
    return {"type": "error", "status": http_status, "code": code, "message": message}


def sandbox_job_end(
    *, job_id, status: str, code: str, message: str, http_status: int, from_statuses=LIVE_STATUSES,
    counts: dict[str, int] | None = None,
) -> bool:  # fmt: skip
    """End a live job without a result (failed, cancelled, expired) and tell its stream; False if
    it had already ended (then nothing changes). ``counts``: the tokens it used before it ended
    (prompt_tokens, completion_tokens), which count against the daily budget; none without them
    (it never ran, or its worker died: the prompt tokens held at admission are released)."""
    ended = SandboxJob.objects.filter(pk=job_id, status__in=from_statuses).update(
        status=status, error_code=code, error_message=message, finished_at=timezone.now(),
        **(counts or {"prompt_tokens": 0, "completion_tokens": 0}),
    )  # fmt: skip
    if ended:
        transport().publish(job_id, [_error_event(http_status=http_status, code=code, message=message)])
    return bool(ended)


def sandbox_job_start(*, job_id, worker: str, check_access: bool = True) -> SandboxJob | None:
    """Queued -> running for exactly one worker; None when the job must not run (already taken,
    ended, expired in the queue, cancelled, or, with ``check_access``, access ended while it
    waited). The worker passes ``check_access=False`` and checks access itself right after, off
    the path to the first token (``worker.Batcher``), ending the job if access ended."""
    now = timezone.now()
    queued_since = now - dt.timedelta(seconds=settings.SANDBOX_QUEUE_TIMEOUT_SECONDS)
    started = SandboxJob.objects.filter(
        pk=job_id, status=JobStatus.QUEUED, created_at__gte=queued_since, cancel_requested_at__isnull=True
    ).update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker[:200])
    job = SandboxJob.objects.filter(pk=job_id).select_related("variant", "user").first()
    if not started:
        if job is not None and job.status == JobStatus.QUEUED:
            expired = job.created_at < queued_since
            sandbox_job_end(
                job_id=job.pk,
                status=JobStatus.EXPIRED if expired else JobStatus.CANCELLED,
                code="queue_timeout" if expired else "cancelled",
                http_status=503 if expired else 409,
                message="The sandbox was too busy to start this request in time. Try again."
                if expired
                else "This request was cancelled.",
                from_statuses=[JobStatus.QUEUED],
            )
        return None
    if check_access:
        _, _, refusal = sandbox_access(job.user, job.variant.slug)
        if refusal is not None:
            sandbox_job_end(
                job_id=job.pk, status=JobStatus.CANCELLED, code=refusal.code, http_status=refusal.status,
                message=refusal.message, from_statuses=[JobStatus.RUNNING],
            )  # fmt: skip
            return None
    return job


def sandbox_job_succeed(
    *,
    job_id,
    outputs: list[str],
    finish_reasons: list[str],
    prompt_tokens: int,
    completion_tokens: int,
    first_token_at: dt.datetime | None,
) -> bool:
    """Running -> succeeded with its counts, then the stream's last event; False if the job had
    ended meanwhile (cancelled, or failed by the sweep)."""
    done = SandboxJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED,
        outputs=outputs,
        finish_reasons=finish_reasons,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        first_token_at=first_token_at,
        finished_at=timezone.now(),
    )
    if done:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        transport().publish(job_id, [{"type": "done", "usage": usage}])
    return bool(done)


@transaction.atomic
def sandbox_job_cancel(*, job: SandboxJob, actor, request=None) -> SandboxJob:
    """Stop a job: a queued one ends now, a running one within a few decode steps (its worker
    looks for the request several times a second)."""
    job = SandboxJob.objects.select_for_update().get(pk=job.pk)
    if not job.is_live:
        return job
    if job.status == JobStatus.QUEUED:
        transaction.on_commit(
            lambda: sandbox_job_end(
                job_id=job.pk,
                status=JobStatus.CANCELLED,
                code="cancelled",
                http_status=409,
                message="This request was cancelled.",
                from_statuses=[JobStatus.QUEUED],
            )
        )
    SandboxJob.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    if actor is not None and actor.pk != job.user_id:
        audit_event_record(action="sandbox.job_cancelled", actor=actor, target=job, request=request)
    job.refresh_from_db()
    return job


def sandbox_jobs_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Fail running jobs whose worker stopped touching them (it died), expire jobs queued too
    long, and delete old stream logs. Run by beat, and by a waiting request that hears nothing."""
    now = now or timezone.now()
    stale = now - dt.timedelta(seconds=settings.SANDBOX_HEARTBEAT_TIMEOUT_SECONDS)
    lost = expired = 0
    for job_id in SandboxJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale).values_list(
        "pk", flat=True
    ):
        lost += sandbox_job_end(
            job_id=job_id, status=JobStatus.FAILED, code="worker_lost", http_status=500,
            message="The sandbox worker running this request stopped. Nothing was charged for it; try again.",
            from_statuses=[JobStatus.RUNNING],
        )  # fmt: skip
    too_old = now - dt.timedelta(seconds=settings.SANDBOX_QUEUE_TIMEOUT_SECONDS)
    for job_id in SandboxJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=too_old).values_list(
        "pk", flat=True
    ):
        expired += sandbox_job_end(
            job_id=job_id, status=JobStatus.EXPIRED, code="queue_timeout", http_status=503,
            message="The sandbox was too busy to start this request in time. Try again.",
            from_statuses=[JobStatus.QUEUED],
        )  # fmt: skip
    discarded = transport().discard_older_than(3600)
    return {"lost": lost, "expired": expired, "stream_logs_deleted": discarded}


STREAM_LOST_AFTER_SECONDS = 2.0  # an ended job's last event is published right after its row changes


def sandbox_job_check_alive(*, job_id) -> dict | None:
    """The sweep for one job a client waits on and hears nothing from: ends it if its worker is
    gone or it queued too long (its stream then says so). Returns the event to end the wait with
    when the job ended long enough ago and its stream still says nothing (the stream was lost,
    e.g. its Redis key deleted), so a client never waits for an event that will not come."""
    job = SandboxJob.objects.filter(pk=job_id).only("status", "heartbeat_at", "created_at", "finished_at").first()
    now = timezone.now()
    if job is None:
        return _error_event(http_status=500, code="stream_lost", message="This request's job no longer exists.")
    if not job.is_live:
        if job.finished_at and job.finished_at < now - dt.timedelta(seconds=STREAM_LOST_AFTER_SECONDS):
            return _error_event(
                http_status=500,
                code="stream_lost",
                message=f"This request ended ({job.status}) but its text was lost on the way. "
                f"GET /api/v1/sandbox/jobs/{job.pk} shows its record.",
            )
        return None
    heartbeat_stale = now - dt.timedelta(seconds=settings.SANDBOX_HEARTBEAT_TIMEOUT_SECONDS)
    queued_stale = now - dt.timedelta(seconds=settings.SANDBOX_QUEUE_TIMEOUT_SECONDS)
    if (job.status == JobStatus.RUNNING and job.heartbeat_at is not None and job.heartbeat_at < heartbeat_stale) or (
        job.status == JobStatus.QUEUED and job.created_at < queued_stale
    ):
        sandbox_jobs_sweep(now=now)
    return None


def sandbox_records_purge(*, now: dt.datetime | None = None) -> int:
    """Delete the prompts and outputs of jobs older than SANDBOX_RECORD_RETENTION_DAYS; counts,
    timings and attribution stay. How many jobs were purged."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.SANDBOX_RECORD_RETENTION_DAYS)
    return (
        SandboxJob.objects.filter(created_at__lt=cutoff, records_purged_at__isnull=True)
        .exclude(status__in=LIVE_STATUSES)
        .update(prompts=None, outputs=None, records_purged_at=now)
    )


@transaction.atomic
def sandbox_quota_set(
    *, user, actor, concurrent_requests: int | None, requests_per_minute: int | None,
    tokens_per_day: int | None, note: str = "", request=None,
) -> SandboxQuota | None:  # fmt: skip
    """Override a user's sandbox limits (None keeps that default); all None removes the override."""
    if actor is not None and actor.pk == user.pk:
        # Like deciding one's own request: another reviewer must do it.
        raise ValidationError("You cannot change your own sandbox limits; ask another reviewer.")
    before = SandboxQuota.objects.filter(user=user).first()
    values = {
        "concurrent_requests": concurrent_requests,
        "requests_per_minute": requests_per_minute,
        "tokens_per_day": tokens_per_day,
    }
    previous = {field: getattr(before, field) for field in values} if before else None
    if all(value is None for value in values.values()):
        if before is not None:
            before.delete()
        quota = None
    else:
        quota = before or SandboxQuota(user=user)
        for field, value in values.items():
            setattr(quota, field, value)
        quota.note, quota.updated_by, quota.updated_at = note, actor, timezone.now()
        quota.full_clean()
        quota.save()
    audit_event_record(
        action="sandbox.quota_set", actor=actor, target=user, request=request,
        details={"before": previous, "after": values if quota else None, "note": note},
    )  # fmt: skip
    return quota
