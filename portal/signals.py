"""Audit events for account activity that allauth performs itself.

allauth commits its own changes (and sends some signals only after commit), so
these events are written right after the change rather than inside its
transaction. Changes made by the portal's own services are recorded in the
same transaction (see access.audit.services)."""

from allauth.account.signals import (
    email_added,
    email_changed,
    email_confirmed,
    email_removed,
    password_changed,
    password_reset,
    password_set,
    user_signed_up,
)
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from access.audit.services import audit_event_record
from portal.mfa import session_mark_mfa_enrolled


def _record(action, *, user, request, target=None, details=None):
    with transaction.atomic():
        audit_event_record(action=action, actor=user, target=target or user, request=request, details=details)


@receiver(user_signed_up)
def on_signed_up(sender, request, user, **kwargs):
    from portal.roles import RESEARCHER
    from portal.services import user_role_set

    with transaction.atomic():
        audit_event_record(action="user.signed_up", actor=user, target=user, request=request)
        user_role_set(user=user, role=RESEARCHER, actor=user, request=request)


@receiver(email_confirmed)
def on_email_confirmed(sender, request, email_address, **kwargs):
    _record("user.email_verified", user=email_address.user, request=request, details={"email": email_address.email})


@receiver(user_logged_in)
def on_logged_in(sender, request, user, **kwargs):
    from portal.adapters import login_address_remember

    _record("user.logged_in", user=user, request=request)
    login_address_remember(request, user)


@receiver(user_logged_out)
def on_logged_out(sender, request, user, **kwargs):
    if user is not None:
        _record("user.logged_out", user=user, request=request)


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    # Who tried is not proven, so the event has no actor; the email tried is a detail.
    with transaction.atomic():
        audit_event_record(
            action="user.login_failed", request=request, details={"email": str(credentials.get("email", ""))[:254]}
        )


@receiver(password_changed)
def on_password_changed(sender, request, user, **kwargs):
    from portal.services import user_credentials_revoke

    _record("user.password_changed", user=user, request=request)
    # Whoever else knew the old password keeps nothing of it: no token, no other session.
    # The session that changed it stays logged in.
    user_credentials_revoke(
        user=user, reason="password_changed", actor=user, request=request, keep_current_session=True
    )


@receiver(password_set)
def on_password_set(sender, request, user, **kwargs):
    _record("user.password_set", user=user, request=request)


@receiver(email_added)
def on_email_added(sender, request, user, email_address, **kwargs):
    _record("user.email_added", user=user, request=request, details={"email": email_address.email})


@receiver(email_removed)
def on_email_removed(sender, request, user, email_address, **kwargs):
    _record("user.email_removed", user=user, request=request, details={"email": email_address.email})


@receiver(email_changed)
def on_email_changed(sender, request, user, from_email_address, to_email_address, **kwargs):
    details = {"from": getattr(from_email_address, "email", None), "to": to_email_address.email}
    _record("user.primary_email_changed", user=user, request=request, details=details)


@receiver(password_reset)
def on_password_reset(sender, request, user, **kwargs):
    from portal.services import user_credentials_revoke

    _record("user.password_reset", user=user, request=request)
    # A reset is what someone does who fears their password is known: every session ends.
    user_credentials_revoke(user=user, reason="password_reset", actor=user, request=request)


@receiver(authenticator_added)
def on_authenticator_added(sender, request, user, authenticator, **kwargs):
    if authenticator.type == Authenticator.Type.RECOVERY_CODES:
        # allauth adds recovery codes along with the first authenticator app, and sends this
        # signal for each: one enrolment is one "mfa.enabled". New codes prove no factor either.
        _record("mfa.recovery_codes_generated", user=user, request=request)
        return
    # Activating TOTP needs a valid code, so this session has just proven the factor.
    session_mark_mfa_enrolled(request, user)
    _record("mfa.enabled", user=user, request=request, details={"type": authenticator.type})


@receiver(authenticator_removed)
def on_authenticator_removed(sender, request, user, authenticator, **kwargs):
    _record("mfa.removed", user=user, request=request, details={"type": authenticator.type})


@receiver(authenticator_reset)
def on_authenticator_reset(sender, request, user, authenticator, **kwargs):
    _record("mfa.reset", user=user, request=request, details={"type": authenticator.type})
