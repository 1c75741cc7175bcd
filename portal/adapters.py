from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.utils import is_mfa_enabled
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


class MFAAdapter(DefaultMFAAdapter):
    def can_delete_authenticator(self, authenticator):
        # Reviewers and admins must keep a second factor; an admin who needs to
        # reset one does it for them in the Django admin.
        return not user_is_privileged(authenticator.user)
