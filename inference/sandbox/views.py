"""The sandbox's pages. The researcher's: the playground (its script, static/sandbox/playground.js,
sends the form to /v1/ and streams the answer in), a job's record with its cancel button, and their
use against their limits. The reviewers' (``reviewer_page``): everyone's use over a period, busiest
first, and one user's jobs, with prompts and outputs while they are kept, and their quota override.

A job is only ever looked up through ``sandbox_job_get_for_owner`` on the researcher's pages, so
nobody learns that another's job exists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from access.review.permissions import reviewer_page
from inference.sandbox.forms import PlaygroundForm, SandboxQuotaForm, UsagePeriodForm
from inference.sandbox.models import SandboxJob, SandboxQuota
from inference.sandbox.selectors import (
    sandbox_job_get_for_owner,
    sandbox_jobs_for_user,
    sandbox_limits_for,
    sandbox_usage,
    sandbox_usage_by_user,
    sandbox_variants_for_user,
)
from inference.sandbox.services import sandbox_job_cancel, sandbox_quota_set
from portal.forms import service_errors_to_form

PLAYGROUND_RECENT_JOBS = 10
USAGE_PAGE_SIZE = 50
REVIEW_PAGE_SIZE = 50
REVIEW_USER_JOBS = 50
_ANY_JOB = "00000000-0000-0000-0000-000000000000"


def _duration(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _between(start, end) -> dt.timedelta | None:
    return end - start if start is not None and end is not None else None


@dataclass(frozen=True)
class JobTimings:
    """A job's clock, as the researcher reads it: waiting, first token, generating, in all."""

    queued: str
    first_token: str
    generating: str
    total: str
    tokens_per_second: str


def job_timings(job: SandboxJob) -> JobTimings:
    generating = _between(job.first_token_at, job.finished_at)
    rate = "—"
    if generating is not None and generating.total_seconds() > 0 and job.completion_tokens:
        rate = f"{job.completion_tokens / generating.total_seconds():.1f}"
    return JobTimings(
        queued=_duration(_between(job.created_at, job.started_at)),
        first_token=_duration(_between(job.created_at, job.first_token_at)),
        generating=_duration(generating),
        total=_duration(_between(job.created_at, job.finished_at)),
        tokens_per_second=rate,
    )


def _retention_context() -> dict:
    return {"retention_days": settings.SANDBOX_RECORD_RETENTION_DAYS}


# --- The researcher's pages -----------------------------------------------------------------------


def _base_url(request, slug: str | None = None) -> str:
    """The absolute base URL an OpenAI client takes: /v1/, or a model's own /sandbox/<slug>/v1/."""
    models = reverse("sandbox-one:sandbox-models", kwargs={"slug": slug}) if slug else reverse("sandbox-models")
    return request.build_absolute_uri(models).removesuffix("models")


@login_required
@require_GET
@never_cache
def sandbox_playground(request):
    variants = sandbox_variants_for_user(request.user)
    form = PlaygroundForm(variants=variants, selected=request.GET.get("model"))
    return render(
        request,
        "sandbox/playground.html",
        {
            "form": form,
            "variants": variants,
            "models": form.model_options(),
            "jobs": list(sandbox_jobs_for_user(request.user)[:PLAYGROUND_RECENT_JOBS]),
            "usage": sandbox_usage(request.user),
            "base_url": _base_url(request),
            "model_base_url": _base_url(request, form.chosen.slug if form.chosen else "MODEL"),
            "prompt_tokens": (form.chosen.sandbox_max_prompt_tokens if form.chosen else None)
            or settings.SANDBOX_MAX_PROMPT_TOKENS,
            "cancel_path": _path_for_any_job("api-sandbox-job-cancel"),
            "job_path": _path_for_any_job("sandbox-job"),
            **_retention_context(),
        },
    )


def _path_for_any_job(name: str) -> str:
    """A job's URL with ``{id}`` where the id goes, for the script to fill in."""
    return reverse(name, args=[_ANY_JOB]).replace(_ANY_JOB, "{id}")


def _job_for_owner(request, job_id) -> SandboxJob:
    job = sandbox_job_get_for_owner(request.user, job_id)
    if job is None:
        raise Http404("No such sandbox job of yours.")
    return job


def job_record_context(job: SandboxJob) -> dict:
    """What a job's page shows besides the row: its timings, the parameters it was sent with, each
    output with its finish reason, and until when its texts are kept."""
    reasons = list(job.finish_reasons or [])
    outputs = [
        {"index": i, "text": text, "finish_reason": reasons[i] if i < len(reasons) else None}
        for i, text in enumerate(job.outputs or [])
    ]
    params = [
        (name, value)
        for name, value in (job.params or {}).items()
        if value is not None and value is not False and value != "" and value != []
    ]
    kept_until = None
    if job.records_purged_at is None:
        kept_until = job.created_at + dt.timedelta(days=settings.SANDBOX_RECORD_RETENTION_DAYS)
    return {"timings": job_timings(job), "outputs": outputs, "params": params, "kept_until": kept_until}


@login_required
@require_GET
@never_cache
def sandbox_job_detail(request, job_id):
    job = _job_for_owner(request, job_id)
    return render(request, "sandbox/job_detail.html", {"job": job, **job_record_context(job), **_retention_context()})


@login_required
@require_POST
def sandbox_job_cancel_view(request, job_id):
    job = _job_for_owner(request, job_id)
    if not job.is_live:
        messages.info(request, f"This job had already ended ({job.get_status_display().lower()}).")
        return redirect("sandbox-job", job_id=job.pk)
    sandbox_job_cancel(job=job, actor=request.user, request=request)
    messages.success(request, "Cancelled. A running job stops within a few tokens.")
    return redirect("sandbox-job", job_id=job.pk)


@login_required
@require_GET
@never_cache
def sandbox_usage_page(request):
    page = Paginator(sandbox_jobs_for_user(request.user), USAGE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "sandbox/usage.html",
        {
            "usage": sandbox_usage(request.user),
            "page": page,
            "has_models": bool(sandbox_variants_for_user(request.user)),
            **_retention_context(),
        },
    )


# --- The reviewers' pages -------------------------------------------------------------------------


@reviewer_page
@require_GET
def review_sandbox_usage(request):
    days = UsagePeriodForm(request.GET).days_or_default()
    period = UsagePeriodForm(initial={"days": str(days)})  # shows the period in use, also the default one
    rows = sandbox_usage_by_user(since=timezone.now() - dt.timedelta(days=days))
    page = Paginator(rows, REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "sandbox/review_usage.html",
        {"period": period, "days": days, "page": page, "query": f"days={days}", **_retention_context()},
    )


def _review_user_page(request, user, quota_form: SandboxQuotaForm, status: int = 200):
    now = timezone.now()
    totals = []
    for days in (1, 7, 30):
        row = sandbox_usage_by_user(since=now - dt.timedelta(days=days)).filter(user_id=user.pk).first()
        totals.append({"days": days, "jobs": row["jobs"] if row else 0, "tokens": (row["tokens"] or 0) if row else 0,
                       "failed": row["failed"] if row else 0})  # fmt: skip
    jobs = list(sandbox_jobs_for_user(user).select_related("grant")[:REVIEW_USER_JOBS])
    return render(
        request,
        "sandbox/review_user.html",
        {
            "subject": user,
            "usage": sandbox_usage(user, now=now),
            "limits": sandbox_limits_for(user),
            "quota": SandboxQuota.objects.filter(user=user).select_related("updated_by").first(),
            "quota_form": quota_form,
            "totals": totals,
            "jobs": jobs,
            "jobs_shown": REVIEW_USER_JOBS,
            **_retention_context(),
        },
        status=status,
    )


def _subject_or_404(user_id: int):
    return get_object_or_404(get_user_model(), pk=user_id)


@reviewer_page
@require_GET
def review_sandbox_user(request, user_id: int):
    user = _subject_or_404(user_id)
    quota = SandboxQuota.objects.filter(user=user).first()
    return _review_user_page(request, user, SandboxQuotaForm.for_quota(quota))


@reviewer_page
@require_POST
def review_sandbox_quota(request, user_id: int):
    user = _subject_or_404(user_id)
    form = SandboxQuotaForm(request.POST)
    if form.is_valid():
        try:
            quota = sandbox_quota_set(user=user, actor=request.user, request=request, **form.quota_kwargs())
        except ValidationError as exc:
            service_errors_to_form(form, exc)
        else:
            if quota is None:
                messages.success(request, f"{user.email} has the default sandbox limits again.")
            else:
                messages.success(request, f"Saved {user.email}'s sandbox limits.")
            return redirect("review-sandbox-user", user_id=user.pk)
    return _review_user_page(request, user, form, status=400)


@reviewer_page
@require_POST
def review_sandbox_job_cancel(request, job_id):
    job = SandboxJob.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404("No such sandbox job.")
    if job.is_live:
        sandbox_job_cancel(job=job, actor=request.user, request=request)
        messages.success(request, "Cancelled the job; its owner's stream ends with an error.")
    else:
        messages.info(request, f"This job had already ended ({job.get_status_display().lower()}).")
    return redirect("review-sandbox-user", user_id=job.user_id)
