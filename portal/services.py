"""State changes for accounts and API tokens. Each writes an audit event."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from access.audit.services import audit_event_record
from portal import roles
from portal.models import ApiToken, User

# 32 bytes = 256 random bits, comfortably above the 160 the threat model asks for.
API_TOKEN_SECRET_BYTES = 32


@transaction.atomic
def user_role_set(*, user: User, role: str, actor=None, request=None) -> User:
    if role not in roles.ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}; choose one of {', '.join(roles.ROLES)}."})
    before = roles.user_primary_role(user)
    privileged_groups = Group.objects.filter(name__in=roles.PRIVILEGED_ROLES)
    user.groups.remove(*privileged_groups)
    user.groups.add(roles.role_group(roles.RESEARCHER))
    if role != roles.RESEARCHER:
        user.groups.add(roles.role_group(role))
    # Admins use the Django admin; nobody else gets in.
    user.is_staff = role == roles.ADMIN
    user.full_clean()
    user.save(update_fields=["is_staff"])
    user._portal_roles = None
    if role in roles.PRIVILEGED_ROLES and before not in roles.PRIVILEGED_ROLES:
        # Tokens made without MFA must not carry new powers: a promoted user
        # creates new ones from an MFA-verified session.
        user_api_tokens_revoke(user=user, reason="role_promoted", actor=actor, request=request)
    if before != role:
        audit_event_record(
            action="user.role_changed",
            actor=actor,
            target=user,
            request=request,
            details={"from": before, "to": role},
        )
    return user


@transaction.atomic
def user_create(
    *,
    email: str,
    password: str | None,
    role: str = roles.RESEARCHER,
    email_verified: bool = False,
    actor=None,
    request=None,
) -> User:
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": f"An account with {email} already exists."})
    user = User(email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=email_verified)
    audit_event_record(
        action="user.created",
        actor=actor,
        target=user,
        request=request,
        details={"role": role, "email_verified": email_verified},
    )
    user_role_set(user=user, role=role, actor=actor, request=request)
    return user


@transaction.atomic
def user_password_set(*, user: User, password: str, actor=None, request=None) -> User:
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_event_record(action="user.password_set", actor=actor, target=user, request=request)
    return user


@transaction.atomic
def user_email_mark_verified(*, user: User, actor=None, request=None) -> None:
    address, created = EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    if created or not address.verified:
        EmailAddress.objects.filter(pk=address.pk).update(verified=True)
        audit_event_record(
            action="user.email_verified", actor=actor, target=user, request=request, details={"email": user.email}
        )


@transaction.atomic
def user_mfa_reset(*, user: User, actor=None, request=None) -> int:
    """Remove every authenticator (TOTP, recovery codes) of a user who lost theirs.

    Whoever holds the lost device may hold the user's sessions and tokens too, so
    those end with it: every session (MFA-verified ones included) and every API
    token. A reviewer or admin then logs in again and enrols a new authenticator
    before reaching any privileged page."""
    from allauth.mfa.models import Authenticator

    removed = list(Authenticator.objects.filter(user=user).values_list("type", flat=True))
    Authenticator.objects.filter(user=user).delete()
    if removed:
        audit_event_record(
            action="mfa.reset_by_operator", actor=actor, target=user, request=request, details={"removed": removed}
        )
        user_credentials_revoke(user=user, reason="mfa_reset", actor=actor, request=request)
    return len(removed)


@transaction.atomic
def user_sessions_end(*, user: User, reason: str, actor=None, request=None, keep_current: bool = False) -> None:
    """End the user's sessions, wherever they are stored: raising the user's session
    generation changes the hash Django checks every session against, so each one is
    logged out at its next request, as after a password change.

    ``keep_current`` keeps the session of ``request`` logged in when it is the user's
    own (the one that just changed the password); every other session ends."""
    User.objects.filter(pk=user.pk).update(session_generation=F("session_generation") + 1)
    user.refresh_from_db(fields=["session_generation"])
    kept = bool(keep_current and request is not None and getattr(request.user, "pk", None) == user.pk)
    if kept:
        update_session_auth_hash(request, user)
    audit_event_record(
        action="user.sessions_ended",
        actor=actor,
        target=user,
        request=request,
        details={"reason": reason, "current_session_kept": kept},
    )


@transaction.atomic
def user_credentials_revoke(
    *, user: User, reason: str, actor=None, request=None, keep_current_session: bool = False
) -> int:
    """Revoke every API token of the user and end their sessions (all, or all but the
    current one: see ``user_sessions_end``), after their password or second factor
    changed hands. Returns how many tokens were revoked."""
    revoked = user_api_tokens_revoke(user=user, reason=reason, actor=actor, request=request)
    user_sessions_end(user=user, reason=reason, actor=actor, request=request, keep_current=keep_current_session)
    return revoked


def user_api_tokens_revoke(*, user: User, reason: str, actor=None, request=None) -> int:
    """Revoke every usable API token of the user, each audited; returns how many."""
    tokens = list(ApiToken.objects.usable().filter(user=user))
    for token in tokens:
        api_token_revoke(token=token, actor=actor, request=request, reason=reason)
    return len(tokens)


def _api_token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", errors="replace")).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    name: str,
    expires_at: dt.datetime | None = None,
    actor=None,
    request=None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored or shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry date must be in the future."})
    secret = settings.API_TOKEN_PREFIX + secrets.token_urlsafe(API_TOKEN_SECRET_BYTES)
    token = ApiToken(
        user=user,
        name=name.strip(),
        hint=secret[: len(settings.API_TOKEN_PREFIX) + 6],
        secret_sha256=_api_token_hash(secret),
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    audit_event_record(
        action="api_token.created",
        actor=actor or user,
        target=token,
        request=request,
        details={"user": user.email, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor, request=None, reason: str = "revoked") -> ApiToken:
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_event_record(
        action="api_token.revoked",
        actor=actor,
        target=token,
        request=request,
        details={"user": token.user.email, "reason": reason},
    )
    return token


def api_token_authenticate(secret: str) -> ApiToken | None:
    """The usable token with this secret, or None. Marks it used (at most once a minute)."""
    if not secret.startswith(settings.API_TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = (
        ApiToken.objects.usable()
        .select_related("user")
        .filter(secret_sha256=_api_token_hash(secret), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    resolution = dt.timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        # Usage is bookkeeping, not a state change: no audit event, and one
        # UPDATE a minute at most so busy scripts do not write on every call.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
