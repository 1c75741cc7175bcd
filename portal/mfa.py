"""MFA enforcement for reviewers and admins.

A session counts as MFA-verified when, in this session, the user either logged
in with a second factor (allauth records it) or enrolled one (they typed a valid
TOTP code to activate it; see ``portal.signals``). Privileged users without such
a session reach no review page, no Django admin and cannot create API tokens.

A reviewer's first login is one path: the page that says why an authenticator app is required
(``mfa_required``), allauth's set-up page, the recovery codes with a Continue button, then the page
they first asked for. That page's address is kept in the session (``MFA_NEXT_SESSION_KEY``) while
allauth's own views run in between.
"""

from __future__ import annotations

from functools import wraps

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from portal.roles import user_is_privileged

ENROLLED_IN_SESSION_KEY = "portal_mfa_enrolled_user"
# Where a user who is sent to set up MFA goes once it is done.
MFA_NEXT_SESSION_KEY = "portal_mfa_next"


def safe_next_url(request, url: str | None) -> str:
    """``url`` when it is a path on this site, else an empty string (no open redirect)."""
    if not url or not url.startswith("/") or url.startswith("//"):
        return ""
    if not url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return ""
    return url


def mfa_required_url(next_url: str | None = None) -> str:
    """The page that explains why an authenticator app is needed, then leads to setting one up."""
    url = reverse("mfa-required")
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


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


def mfa_redirect(request, next_url: str | None = None):
    """Send a privileged user to set up MFA, or to log in again with their code; either way they
    come back to ``next_url`` (by default the page they asked for, when it was a GET)."""
    if next_url is None and request.method in ("GET", "HEAD"):
        next_url = request.get_full_path()
    if not is_mfa_enabled(request.user):
        return redirect(mfa_required_url(safe_next_url(request, next_url)))
    messages.warning(
        request,
        "This page needs a session verified with your authenticator code. Log in again to continue.",
    )
    from django.contrib.auth import logout

    logout(request)
    return redirect_to_login(safe_next_url(request, next_url) or request.get_full_path())


def privileged_mfa_required(view):
    """For views any user may open, where privileged users still need MFA first."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if user_needs_mfa_step(request):
            return mfa_redirect(request)
        return view(request, *args, **kwargs)

    return wrapper
