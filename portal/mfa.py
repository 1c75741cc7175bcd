"""MFA enforcement for reviewers and admins.

A session counts as MFA-verified when, in this session, the user either logged
in with a second factor (allauth records it) or enrolled one (they typed a valid
TOTP code to activate it; see ``portal.signals``). Privileged users without such
a session reach no review page, no Django admin and cannot create API tokens.
"""

from __future__ import annotations

from functools import wraps

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect

from portal.roles import user_is_privileged

ENROLLED_IN_SESSION_KEY = "portal_mfa_enrolled_user"


def session_mark_mfa_enrolled(request, user) -> None:
    request.session[ENROLLED_IN_SESSION_KEY] = str(user.pk)


def session_is_mfa_verified(request) -> bool:
    user = request.user
    if not user.is_authenticated:
        return False
    if request.session.get(ENROLLED_IN_SESSION_KEY) == str(user.pk):
        return True
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, user))


def user_needs_mfa_step(request) -> bool:
    """True for a privileged user whose session has not passed a second factor."""
    return user_is_privileged(request.user) and not session_is_mfa_verified(request)


def mfa_redirect(request):
    """Send a privileged user to enrol MFA, or to log in again with their code."""
    if not is_mfa_enabled(request.user):
        messages.warning(
            request,
            "Reviewers and administrators must use two-factor authentication. "
            "Set up an authenticator app to continue.",
        )
        return redirect("mfa_activate_totp")
    messages.warning(
        request,
        "This page needs a session verified with your authenticator code. Log in again to continue.",
    )
    from django.contrib.auth import logout

    logout(request)
    return redirect_to_login(request.get_full_path())


def privileged_mfa_required(view):
    """For views any user may open, where privileged users still need MFA first."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if user_needs_mfa_step(request):
            return mfa_redirect(request)
        return view(request, *args, **kwargs)

    return wrapper
