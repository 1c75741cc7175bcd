from rest_framework.permissions import BasePermission

from portal.mfa import session_is_mfa_verified
from portal.models import ApiToken


class IsReviewer(BasePermission):
    """Reviewers and admins, on a token (only ever created from an MFA-verified
    session or by an operator) or on an MFA-verified browser session."""

    message = "Only reviewers can do this, from a session verified with two-factor authentication or an API token."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.has_perm("access.review_access")):
            return False
        if isinstance(request.auth, ApiToken):
            return True
        return session_is_mfa_verified(request)
