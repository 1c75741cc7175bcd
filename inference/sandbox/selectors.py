"""Who may use which model in the sandbox: exactly while the download gateway would serve them.

A variant is usable by a user when it has ``sandbox`` on, is listed, and the user holds a grant
for it whose effective status is ``active`` (current license accepted, not suspended, revoked or
expired) and whose download links are not suspended by the leak rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.distribution.selectors import grants_with_links_suspended
from access.grants.models import GrantStatus
from access.grants.selectors import grants_annotate_effective_status, grants_for_user
from inference.sandbox.models import LIVE_STATUSES, JobStatus, SandboxJob, SandboxQuota


@dataclass(frozen=True)
class SandboxRefusal:
    """Why a user may not use a variant now, with what to do; ``status`` 404 when the model is
    not offered in the sandbox at all, 403 when it is but not to this user now."""

    status: int
    code: str
    message: str


def _latest_grants(user, variants) -> dict[int, object]:
    """The user's latest grant per variant id, each with its effective status."""
    latest = {}
    for grant in grants_for_user(user).filter(variant__in=variants).order_by("created_at", "id"):
        latest[grant.variant_id] = grant
    grants = grants_annotate_effective_status(latest.values())
    suspended = grants_with_links_suspended([grant.pk for grant in grants])
    for grant in grants:
        grant.links_suspended = grant.pk in suspended
    return latest


def _usable(grant) -> bool:
    return grant is not None and grant.effective_status == GrantStatus.ACTIVE and not grant.links_suspended


def sandbox_variants_for_user(user) -> list[ModelVariant]:
    """The variants the user may run in the sandbox now, in catalog order."""
    if not getattr(user, "is_authenticated", False):
        return []
    variants = list(ModelVariant.objects.filter(sandbox=True, is_listed=True).select_related("family"))
    latest = _latest_grants(user, variants)
    return [variant for variant in variants if _usable(latest.get(variant.pk))]


def sandbox_refusal(user, slug: str) -> tuple[ModelVariant | None, SandboxRefusal | None]:
    """The variant named ``slug`` and None if the user may run it now, else why not."""
    variant, _, refusal = sandbox_access(user, slug)
    return variant, refusal


def sandbox_access(user, slug: str) -> tuple[ModelVariant | None, object | None, SandboxRefusal | None]:
    """The variant named ``slug``, the grant that lets the user run it, and None; or why not."""
    variant = ModelVariant.objects.filter(slug=slug, sandbox=True, is_listed=True).select_related("family").first()
    if variant is None:
        return (
            None,
            None,
            SandboxRefusal(
                404, "model_not_found", f"The model {slug!r} does not exist in the sandbox. GET /v1/models lists yours."
            ),
        )
    grant = _latest_grants(user, [variant]).get(variant.pk)
    if _usable(grant):
        return variant, grant, None
    if grant is None:
        message = f"You have no access to {variant.name}. Apply for it on the portal; approved models appear here."
    elif grant.links_suspended:
        message = (
            f"Your access to {variant.name} is on hold: your download links were used from unusually many places. "
            "A reviewer will contact you."
        )
    elif grant.effective_status == GrantStatus.LICENSE_REQUIRED:
        message = f"Accept the current license of {variant.family.name} on the portal's grants page first."
    else:
        message = f"Your access to {variant.name} is {grant.effective_status}; the sandbox is closed to it."
    return None, None, SandboxRefusal(403, "model_access_denied", message)


# --- Limits and use ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxLimits:
    concurrent_requests: int
    requests_per_minute: int
    tokens_per_day: int
    overridden: bool = False


@dataclass(frozen=True)
class SandboxUsage:
    """One user's use against their limits: live jobs now, requests in the last minute, tokens
    today (UTC; counted tokens of ended jobs, prompts and generated, plus the prompts and the most
    generated tokens of live ones)."""

    limits: SandboxLimits
    live_requests: int
    requests_last_minute: int
    oldest_request_last_minute: dt.datetime | None
    tokens_today: int
    jobs_today: int
    day_ends_at: dt.datetime

    @property
    def tokens_left(self) -> int:
        return max(0, self.limits.tokens_per_day - self.tokens_today)

    @property
    def requests_left(self) -> int:
        return max(0, self.limits.requests_per_minute - self.requests_last_minute)


def sandbox_limits_for(user) -> SandboxLimits:
    quota = SandboxQuota.objects.filter(user=user).first()

    def pick(field: str, default: int) -> int:
        value = getattr(quota, field, None) if quota is not None else None
        return default if value is None else value

    return SandboxLimits(
        concurrent_requests=pick("concurrent_requests", settings.SANDBOX_CONCURRENT_REQUESTS),
        requests_per_minute=pick("requests_per_minute", settings.SANDBOX_REQUESTS_PER_MINUTE),
        tokens_per_day=pick("tokens_per_day", settings.SANDBOX_TOKENS_PER_DAY),
        overridden=quota is not None,
    )


def sandbox_usage(user, *, now: dt.datetime | None = None) -> SandboxUsage:
    now = now or timezone.now()
    day_start = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    minute_ago = now - dt.timedelta(minutes=1)
    live, today, last_minute = Q(status__in=LIVE_STATUSES), Q(created_at__gte=day_start), Q(created_at__gt=minute_ago)
    # One query, on the path of every /v1/ request (an admission reads it).
    use = SandboxJob.objects.filter(Q(user=user) & (today | last_minute | live)).aggregate(
        jobs_today=Count("id", filter=today),
        counted=Sum(F("prompt_tokens") + F("completion_tokens"), filter=today & ~live),
        # A live job holds its prompts' tokens (counted at admission) and its most generated ones.
        reserved=Sum(F("prompt_tokens") + F("completion_tokens_reserved"), filter=today & live),
        minute_count=Count("id", filter=last_minute),
        minute_oldest=Min("created_at", filter=last_minute),
        live=Count("id", filter=live),
    )
    return SandboxUsage(
        limits=sandbox_limits_for(user),
        live_requests=use["live"],
        requests_last_minute=use["minute_count"],
        oldest_request_last_minute=use["minute_oldest"],
        tokens_today=(use["counted"] or 0) + (use["reserved"] or 0),
        jobs_today=use["jobs_today"],
        day_ends_at=day_start + dt.timedelta(days=1),
    )


def sandbox_jobs_for_user(user) -> QuerySet[SandboxJob]:
    return SandboxJob.objects.filter(user=user).select_related("variant")


def sandbox_job_get_for_owner(user, job_id) -> SandboxJob | None:
    """The user's own job, or None for another's or an unknown id: nobody learns another's exists."""
    try:
        return sandbox_jobs_for_user(user).filter(pk=job_id).first()
    except (ValueError, ValidationError):
        return None


def sandbox_queue_length() -> int:
    return SandboxJob.objects.filter(status=JobStatus.QUEUED).count()


def sandbox_usage_by_user(*, since: dt.datetime):
    """Per user since ``since``: jobs, tokens, failures and the last job; for reviewers, busiest first."""
    return (
        SandboxJob.objects.filter(created_at__gte=since)
        .values("user_id", "user__email")
        .annotate(
            jobs=Count("id"),
            tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
            last_job_at=Max("created_at"),
        )
        .order_by("-tokens", "user__email")
    )
