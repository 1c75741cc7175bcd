"""Who may open the review pages."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.views.decorators.cache import never_cache

from access.review.services import reviewer_can_review
from portal.mfa import privileged_mfa_required


def reviewer_page(view):
    """Logged in, MFA-verified session, review permission: in that order, so a
    reviewer without a second factor is sent to enrol or log in again, never shown
    a review page, and anybody else gets 403."""

    @wraps(view)
    def check_reviewer(request, *args, **kwargs):
        if not reviewer_can_review(request.user):
            raise PermissionDenied("Only reviewers can open the review pages.")
        return view(request, *args, **kwargs)

    return login_required(privileged_mfa_required(never_cache(check_reviewer)))
