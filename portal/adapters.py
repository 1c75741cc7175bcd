import base64

from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.utils import is_mfa_enabled
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.urls import reverse

from portal.roles import user_is_privileged


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        return settings.PORTAL_SIGNUP_OPEN

    def get_login_redirect_url(self, request):
        # Reviewers and admins without a second factor go straight to enrolling one.
        from portal.mfa import user_needs_mfa_step

        if user_needs_mfa_step(request) and not is_mfa_enabled(request.user):
            return reverse("mfa_activate_totp")
        return super().get_login_redirect_url(request)


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
