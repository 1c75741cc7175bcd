from __future__ import annotations

import base64
import hashlib
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from allauth.core.internal import ratelimit
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.utils import is_mfa_enabled
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from portal.roles import user_is_privileged

# How many addresses a user is remembered to have logged in from (most recent first).
LOGIN_KNOWN_ADDRESSES_KEPT = 20


def portal_url(path: str) -> str:
    """An absolute URL of the portal, from PORTAL_BASE_URL: never from a request's Host header,
    which a client chooses (any port of an allowed host passes ALLOWED_HOSTS)."""
    return settings.PORTAL_BASE_URL.rstrip("/") + path


def _link_on_portal(value, request_host: str | None):
    """``value`` with its scheme and host replaced by PORTAL_BASE_URL's when it is an absolute
    link to the host the request named; any other value unchanged."""
    if not request_host or not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return value
    parts = urlsplit(value)
    if parts.netloc != request_host:
        return value
    return portal_url(parts._replace(scheme="", netloc="").geturl())


@dataclass(frozen=True)
class PortalSite:
    """What allauth's email templates read of "the current site", from the settings."""

    name: str
    domain: str


def _login_account(credentials: dict) -> str:
    return str(credentials.get("email") or credentials.get("username") or "").strip().lower()


def _login_failed_rates(per: str) -> dict:
    """allauth's "login_failed" rates (ACCOUNT_RATE_LIMITS) counted per ``per`` ("ip" or "key") alone."""
    from allauth.account import app_settings

    rates = [rate.strip() for rate in (app_settings.RATE_LIMITS.get("login_failed") or "").split(",")]
    return {"login_failed": ",".join(rate for rate in rates if rate and ratelimit.parse_rate(rate).per == per)}


def _login_known_addresses_key(account: str) -> str:
    return "portal:login-known-addresses:" + hashlib.sha256(account.encode()).hexdigest()


def login_address_remember(request, user) -> None:
    """Remember that ``user`` logged in (every factor passed) from the request's address, under
    each of their email addresses: an account under attack is not slowed down from there."""
    from allauth.account.models import EmailAddress

    try:
        address = ratelimit.get_ip(request)
    except PermissionDenied:
        return  # no client address (a login made in code, e.g. Django's test client's force_login)
    now = time.time()
    horizon = now - settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400
    accounts = {
        user.email.lower(),
        *(email.lower() for email in EmailAddress.objects.filter(user=user).values_list("email", flat=True)),
    }
    for account in accounts:
        key = _login_known_addresses_key(account)
        known = {a: seen for a, seen in (cache.get(key) or {}).items() if seen > horizon}
        known[address] = now
        newest = dict(sorted(known.items(), key=lambda item: item[1], reverse=True)[:LOGIN_KNOWN_ADDRESSES_KEPT])
        cache.set(key, newest, timeout=settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400)


def _login_address_is_known(account: str, address: str) -> bool:
    seen = (cache.get(_login_known_addresses_key(account)) or {}).get(address)
    return seen is not None and seen > time.time() - settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400


class AccountAdapter(DefaultAccountAdapter):
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "login_locked_for_network": "Too many failed login attempts from your network. Wait a minute and try again.",
        "login_locked_for_address": (
            "Too many failed login attempts for this account from your network. Wait up to {minutes} "
            "minutes and try again, or reset your password with “Forgot your password?”."
        ),
        "login_slowed_down": (
            "Too many failed login attempts for this account from many networks. Logins to it from "
            "networks it has not logged in from before are slowed down: wait a minute and try again."
        ),
    }

    def is_open_for_signup(self, request):
        return settings.PORTAL_SIGNUP_OPEN

    # --- Failed logins ------------------------------------------------------------
    # Locked per account and address, slowed down per account: someone who fails again and again
    # for a reviewer's email locks only their own address out, and the reviewer still logs in from
    # theirs. allauth's "login_failed" rates (LOGIN_FAILURES_PER_IP_PER_MINUTE per address,
    # LOGIN_FAILURES_PER_ACCOUNT per key) count the key below; on top of them, an account takes
    # at most LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE failures a minute from all the addresses it has
    # not logged in from before, so many addresses together cannot guess fast either.

    def _get_login_attempts_cache_key(self, request, **credentials):
        # allauth's own key is the Host header and the email: a lock per account, which a client
        # also escapes by naming another port. This one is the account at the client's address.
        return f"{_login_account(credentials)}@{ratelimit.get_ip(request)}"

    def pre_authenticate(self, request, **credentials):
        key = self._get_login_attempts_cache_key(request, **credentials)
        used = []
        # The address's limit and the account-at-this-address lock apart, to say which refused.
        for per, refusal in (("ip", "login_locked_for_network"), ("key", "login_locked_for_address")):
            usage = ratelimit.consume(
                request, app="allauth.account", action="login_failed", config=_login_failed_rates(per), key=key
            )
            if not usage:
                for earlier in used:
                    earlier.rollback()  # refused before the password was looked at
                raise self._login_refused(refusal)
            used.append(usage)
        account = _login_account(credentials)
        if not _login_address_is_known(account, ratelimit.get_ip(request)):
            usage = ratelimit.consume(
                request,
                app="portal",
                action="login_failed_account",
                config={"login_failed_account": f"{settings.LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE}/m/key"},
                key=account,
            )
            if not usage:
                for earlier in used:
                    earlier.rollback()
                raise self._login_refused("login_slowed_down")
            used.append(usage)
        # allauth gives back what a successful login used (its authenticate() rolls this back).
        self._login_failed_rl_usage = ratelimit.RateLimitUsage(usage=[one for usage in used for one in usage.usage])

    def _login_refused(self, code: str) -> ValidationError:
        message = self.error_messages[code].format(minutes=math.ceil(settings.LOGIN_LOCKOUT_SECONDS / 60))
        return ValidationError(message, code=code)

    # --- Links in emails ------------------------------------------------------------

    def get_reset_password_from_key_url(self, key):
        uidb36, _, token = key.partition("-")
        return portal_url(reverse("account_reset_password_from_key", kwargs={"uidb36": uidb36, "key": token}))

    def get_email_confirmation_url(self, request, emailconfirmation):
        return portal_url(reverse("account_confirm_email", args=[emailconfirmation.key]))

    def send_mail(self, template_prefix, email, context):
        # Links allauth builds from the request elsewhere (the sign-up link of the "unknown account"
        # email, the reset link of "account already exists") are moved onto PORTAL_BASE_URL too,
        # and the site named in every email's footer is the configured one.
        request = allauth_context.request
        host = request.get_host() if request is not None else None
        context = {name: _link_on_portal(value, host) for name, value in context.items()}
        context["current_site"] = PortalSite(
            name=settings.PORTAL_SITE_NAME, domain=urlsplit(settings.PORTAL_BASE_URL).netloc
        )
        super().send_mail(template_prefix, email, context)

    def get_login_redirect_url(self, request):
        # Reviewers and admins without a second factor are told why they need one, then set it up.
        from portal.mfa import mfa_required_url, user_needs_mfa_step

        url = super().get_login_redirect_url(request)
        if user_needs_mfa_step(request) and not is_mfa_enabled(request.user):
            return mfa_required_url(url)
        return url

    # --- Asking for the password again --------------------------------------------------

    def is_reauthentication_required(self, *, app: str, **kwargs) -> bool:
        # allauth asks for the password again before any change to MFA, even seconds after the
        # login form took it: a reviewer's first login would meet two password prompts in a row.
        # A password typed at login within ACCOUNT_REAUTHENTICATION_TIMEOUT proves as much as a
        # second prompt would, so it counts while the user sets up their first authenticator and
        # reads the recovery codes it came with. Any other change to MFA asks again.
        required = super().is_reauthentication_required(app=app, **kwargs)
        if required and app == "allauth.mfa" and _first_mfa_setup_right_after_login(self.request):
            return False
        return required


_FIRST_SETUP_VIEWS = {"mfa_activate_totp", "mfa_view_recovery_codes", "mfa_download_recovery_codes"}


def _first_mfa_setup_right_after_login(request) -> bool:
    from allauth.account import app_settings as account_settings
    from allauth.account.authentication import get_authentication_records
    from allauth.mfa.models import Authenticator

    from portal.mfa import ENROLLED_IN_SESSION_KEY

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    # Only the steps of a first set-up: turning two-factor off or making new codes still asks.
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name not in _FIRST_SETUP_VIEWS:
        return False
    setting_up = request.session.get(ENROLLED_IN_SESSION_KEY) == str(user.pk) or not (
        Authenticator.objects.filter(user=user).exists()
    )
    if not setting_up:
        return False
    horizon = time.time() - account_settings.REAUTHENTICATION_TIMEOUT
    return any(
        record.get("method") == "password" and record.get("at", 0) > horizon
        for record in get_authentication_records(request, user)
    )


def _mfa_fernet() -> MultiFernet:
    # One key per SECRET_KEY (current first, then fallbacks), so rotating
    # SECRET_KEY with SECRET_KEY_FALLBACKS keeps existing authenticators working.
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_derive_key(key)) for key in keys])


def _derive_key(secret_key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal.mfa.totp-secret").derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(derived)


class MFAAdapter(DefaultMFAAdapter):
    """TOTP secrets are stored encrypted, so a copy of the database alone does
    not let anyone mint a reviewer's codes."""

    ENCRYPTED_PREFIX = "fernet:"

    def encrypt(self, text: str) -> str:
        return self.ENCRYPTED_PREFIX + _mfa_fernet().encrypt(text.encode()).decode()

    def decrypt(self, encrypted_text: str) -> str:
        if not encrypted_text.startswith(self.ENCRYPTED_PREFIX):
            return encrypted_text  # written before encryption was switched on
        return _mfa_fernet().decrypt(encrypted_text.removeprefix(self.ENCRYPTED_PREFIX).encode()).decode()

    def can_delete_authenticator(self, authenticator):
        # Reviewers and admins must keep a second factor. One who lost theirs uses a
        # recovery code, or an operator runs `manage.py portal_user reset-mfa EMAIL`.
        return not user_is_privileged(authenticator.user)
