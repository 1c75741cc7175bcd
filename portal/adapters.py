from allauth.account.adapter import DefaultAccountAdapter
from allauth.mfa.adapter import DefaultMFAAdapter
from django.conf import settings

from portal.roles import user_is_privileged


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        return settings.PORTAL_SIGNUP_OPEN


class MFAAdapter(DefaultMFAAdapter):
    def can_delete_authenticator(self, authenticator):
        # Reviewers and admins must keep a second factor; an admin who needs to
        # reset one does it for them in the Django admin.
        return not user_is_privileged(authenticator.user)
