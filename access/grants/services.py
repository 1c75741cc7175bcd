"""Grant lifecycle and license acceptance. See access.grants.models for the state machine."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.audit.services import audit_event_record, request_client_ip
from access.catalog.models import LicenseVersion, ModelVariant
from access.catalog.selectors import license_current
from access.grants.models import LIVE_GRANT_STATUSES, Grant, GrantStatus, LicenseAcceptance
from access.grants.notices import grant_notice_enqueue
from access.requests.models import AccessRequest
from portal.errors import StateConflict
from portal.models import User
from portal.validators import text_length_check


def end_of_day_after(day: dt.date) -> dt.datetime:
    """A grant "until 31 March" ends when 31 March ends (site time zone)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=timezone.get_current_timezone())


def grant_end_latest_day() -> dt.date:
    """The last day a grant may run to: GRANT_MAX_DURATION_DAYS from today."""
    return timezone.localdate() + dt.timedelta(days=settings.GRANT_MAX_DURATION_DAYS)


def _too_late_message(latest_day: dt.date) -> str:
    days = settings.GRANT_MAX_DURATION_DAYS
    return (
        f"A grant can run for at most {days:,} days (about {days / 365.25:.0f} years): "
        f"choose {latest_day.isoformat()} or earlier, or no end date."
    )


def grant_end_day_check(day: dt.date) -> dt.date:
    """Refuse a grant "until ``day``" past the latest allowed day, before any date arithmetic
    on it (9999-12-31 has no day after)."""
    latest_day = grant_end_latest_day()
    if day > latest_day:
        raise ValidationError(_too_late_message(latest_day))
    return day


def grant_end_check(expires_at: dt.datetime) -> dt.datetime:
    """A grant's end is in the future and at most GRANT_MAX_DURATION_DAYS away (the end of that day)."""
    if expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["The end date must be in the future."]})
    latest_day = grant_end_latest_day()
    if expires_at > end_of_day_after(latest_day):
        raise ValidationError({"expires_at": [_too_late_message(latest_day)]})
    return expires_at


def _require_not_own(grant: Grant, actor, verb: str) -> None:
    # Decisions about one's own access are always someone else's to make.
    if getattr(actor, "pk", None) is not None and actor.pk == grant.user_id:
        raise PermissionDenied(f"You cannot {verb} your own access; another reviewer must.")


def _locked(grant: Grant) -> Grant:
    return Grant.objects.select_for_update().select_related("variant__family", "user").get(pk=grant.pk)


def _transition(grant: Grant, *, to: str, allowed_from: tuple, action: str, actor, request, details=None, **fields):
    if grant.status not in allowed_from:
        raise StateConflict(
            f"This grant is {grant.get_status_display().lower()}; it cannot be {action.split('.')[-1]}.",
            code="invalid_grant_state",
        )
    before = grant.status
    grant.status = to
    for name, value in fields.items():
        setattr(grant, name, value)
    grant.full_clean()
    grant.save()
    audit_event_record(
        action=action,
        actor=actor,
        target=grant,
        request=request,
        details={"from": before, "to": to, "user": grant.user.email, "variant": grant.variant.slug, **(details or {})},
    )
    return grant


@transaction.atomic
def grant_create(
    *,
    user: User,
    variant: ModelVariant,
    actor,
    access_request: AccessRequest | None = None,
    reason: str = "",
    expires_at: dt.datetime | None = None,
    request=None,
) -> Grant:
    """A new grant starts in ``license_required``: the researcher accepts the current license to use it."""
    if access_request is None and not reason.strip():
        raise ValidationError({"reason": ["Say why access is granted without a request."]})
    text_length_check(field="reason", text=reason)
    if access_request is None and getattr(actor, "pk", None) == user.pk:
        # Granting oneself access is deciding one's own request; review exists to prevent it.
        raise PermissionDenied("You cannot grant yourself access; apply, and another reviewer will decide.")
    if expires_at is not None:
        grant_end_check(expires_at)
    if Grant.objects.filter(user=user, variant=variant, status__in=LIVE_GRANT_STATUSES).exists():
        raise StateConflict(f"{user.email} already has a grant for {variant.name}.", code="grant_exists")
    grant = Grant(
        user=user,
        variant=variant,
        request=access_request,
        granted_by=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason.strip(),
        expires_at=expires_at,
    )
    grant.full_clean()
    try:
        with transaction.atomic():
            grant.save()
    except IntegrityError:  # a concurrent grant won the unique constraint
        raise StateConflict(f"{user.email} already has a grant for {variant.name}.", code="grant_exists") from None
    audit_event_record(
        action="grant.created",
        actor=actor,
        target=grant,
        request=request,
        details={
            "user": user.email,
            "variant": variant.slug,
            "request": access_request.reference if access_request else None,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return grant


@transaction.atomic
def grant_accept_license(*, grant: Grant, user: User, license_version: LicenseVersion, request=None) -> Grant:
    """Record the acceptance (append-only) and activate the user's grants of that family that waited for it."""
    grant = _locked(grant)
    if grant.user_id != user.pk:
        raise StateConflict("Only the grant's holder can accept its license.", code="not_holder")
    if grant.status not in (GrantStatus.LICENSE_REQUIRED, GrantStatus.ACTIVE):
        raise StateConflict(
            f"This grant is {grant.get_status_display().lower()}; accepting the license does not change that.",
            code="invalid_grant_state",
        )
    current = license_current(grant.variant.family)
    if current is None or license_version.pk != current.pk:
        raise ValidationError(
            {
                "license_id": [
                    f"Accept the current license, version {current.version} (id {current.pk}); "
                    "read it first at its page."
                    if current
                    else "This model family has no license to accept."
                ]
            }
        )
    acceptance = LicenseAcceptance.objects.create(
        user=user,
        license=current,
        license_sha256=current.sha256,
        grant=grant,
        ip_address=request_client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "")[:512] if request else ""),
    )
    audit_event_record(
        action="license.accepted",
        actor=user,
        target=current,
        request=request,
        details={"acceptance": acceptance.pk, "sha256": current.sha256, "grant": grant.pk},
    )
    waiting = Grant.objects.select_for_update().select_related("variant", "user").filter(
        user=user, variant__family=grant.variant.family, status=GrantStatus.LICENSE_REQUIRED
    )
    for waiting_grant in waiting:
        _transition(
            waiting_grant,
            to=GrantStatus.ACTIVE,
            allowed_from=(GrantStatus.LICENSE_REQUIRED,),
            action="grant.activated",
            actor=user,
            request=request,
            details={"license": current.version},
            activated_at=timezone.now(),
        )
    grant.refresh_from_db()
    return grant


@transaction.atomic
def grant_suspend(*, grant: Grant, actor, reason: str, request=None) -> Grant:
    """Pauses downloads and the sandbox until a reviewer reinstates it; the holder is emailed the reason."""
    if not (reason or "").strip():
        raise ValidationError({"reason": ["Say why the grant is suspended."]})
    text_length_check(field="reason", text=reason)
    _require_not_own(grant, actor, "suspend")
    grant = _transition(
        _locked(grant),
        to=GrantStatus.SUSPENDED,
        allowed_from=(GrantStatus.LICENSE_REQUIRED, GrantStatus.ACTIVE),
        action="grant.suspended",
        actor=actor,
        request=request,
        details={"reason": reason.strip()},
        status_reason=reason.strip(),
    )
    grant_notice_enqueue(grant, "suspended", reason.strip())
    return grant


@transaction.atomic
def grant_reinstate(*, grant: Grant, actor, reason: str = "", request=None) -> Grant:
    """Ends a suspension; the holder is emailed that access is back."""
    text_length_check(field="reason", text=reason)
    grant = _locked(grant)
    if getattr(actor, "pk", None) == grant.user_id:
        raise PermissionDenied("You cannot reinstate your own access; another reviewer must.")
    # Back to active if the license was accepted while it was active; else it waits for acceptance.
    to = GrantStatus.ACTIVE if grant.activated_at else GrantStatus.LICENSE_REQUIRED
    grant = _transition(
        grant,
        to=to,
        allowed_from=(GrantStatus.SUSPENDED,),
        action="grant.reinstated",
        actor=actor,
        request=request,
        details={"reason": (reason or "").strip()},
        status_reason="",
    )
    grant_notice_enqueue(grant, "reinstated", (reason or "").strip())
    return grant


@transaction.atomic
def grant_revoke(*, grant: Grant, actor, reason: str, block_new_requests: bool = False, request=None) -> Grant:
    """Final. Takes effect at once: every check of a grant reads its stored status. The holder is
    emailed the reason and the license's demand to delete every copy of the weights."""
    if not (reason or "").strip():
        raise ValidationError({"reason": ["Say why access is revoked; the researcher will read it."]})
    text_length_check(field="reason", text=reason)
    _require_not_own(grant, actor, "revoke")
    grant = _transition(
        _locked(grant),
        to=GrantStatus.REVOKED,
        allowed_from=LIVE_GRANT_STATUSES,
        action="grant.revoked",
        actor=actor,
        request=request,
        details={"reason": reason.strip(), "block_new_requests": block_new_requests},
        status_reason=reason.strip(),
        blocks_new_requests=block_new_requests,
        ended_at=timezone.now(),
    )
    # The holder learns it from us, with what the license now asks of them.
    grant_notice_enqueue(grant, "revoked", reason.strip())
    return grant


@transaction.atomic
def grant_expire(*, grant: Grant) -> Grant:
    return _transition(
        _locked(grant),
        to=GrantStatus.EXPIRED,
        allowed_from=LIVE_GRANT_STATUSES,
        action="grant.expired",
        actor=None,
        request=None,
        ended_at=timezone.now(),
    )


def grants_expire_due(*, now: dt.datetime | None = None) -> int:
    """Expire every live grant whose end date has passed (run hourly by beat)."""
    now = now or timezone.now()
    expired = 0
    for grant in Grant.objects.filter(status__in=LIVE_GRANT_STATUSES, expires_at__lte=now).only("pk"):
        try:
            grant_expire(grant=grant)
        except StateConflict:
            continue  # changed meanwhile (revoked, say): nothing to expire
        expired += 1
    return expired


def grants_due_for_reminder(*, now: dt.datetime | None = None):
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=settings.GRANT_EXPIRY_REMINDER_DAYS)
    return Grant.objects.filter(
        status__in=(GrantStatus.ACTIVE, GrantStatus.LICENSE_REQUIRED),
        expires_at__gt=now,
        expires_at__lte=horizon,
        expiry_reminder_sent_at__isnull=True,
    ).select_related("user", "variant")


@transaction.atomic
def grant_mark_reminded(*, grant: Grant) -> bool:
    """Claim the reminder for this grant; False if another worker already sent it."""
    updated = Grant.objects.filter(pk=grant.pk, expiry_reminder_sent_at__isnull=True).update(
        expiry_reminder_sent_at=timezone.now()
    )
    if updated:
        audit_event_record(action="grant.expiry_reminder_sent", target=grant, details={"user": grant.user.email})
    return bool(updated)


# What a reviewer may do to a grant from its pages, and the word each leaves it in.
GRANT_STATUS_ACTIONS = {"revoke": "revoked", "suspend": "suspended", "reinstate": "reinstated"}


def grant_status_change(
    *, grant: Grant, action: str, actor, reason: str, block_new_requests: bool = False, request=None
) -> Grant:
    """Revoke, suspend or reinstate, by the action's name: the one entry point of the reviewers'
    grants page and request page."""
    if action == "revoke":
        return grant_revoke(
            grant=grant, actor=actor, reason=reason, block_new_requests=block_new_requests, request=request
        )
    if action == "suspend":
        return grant_suspend(grant=grant, actor=actor, reason=reason, request=request)
    if action == "reinstate":
        return grant_reinstate(grant=grant, actor=actor, reason=reason, request=request)
    raise ValueError(f"No grant action {action!r}; use one of {', '.join(GRANT_STATUS_ACTIONS)}.")
