"""The reviewers' view of one grant's downloads: its bundles (live, expired, replaced,
suspended) and every gateway request made with their links. Behind ``reviewer_page``
(MFA-verified session) and the grant-manager permission, like the grants page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from access.selectors import grants_annotate_effective_status
from access.models import DownloadBundle
from access.selectors_downloads import bundles_for_grant, download_events_for_grant
from access.services.downloads import bundle_unsuspend
from portal.errors import StateConflict
from access.views_review import _grant_get_for_manager, reviewer_page

EVENTS_PAGE_SIZE = 100


def _bundle_state(bundle, now) -> str:
    if bundle.suspended_at is not None:
        return "suspended"
    if bundle.retired_at is not None:
        return "replaced"
    if bundle.expires_at <= now:
        return "expired"
    return "live"


@reviewer_page
@require_GET
def review_grant_downloads(request, pk: int):
    grant = grants_annotate_effective_status([_grant_get_for_manager(request, pk)])[0]
    now = timezone.now()
    bundles = list(bundles_for_grant(grant))
    for bundle in bundles:
        bundle.state = _bundle_state(bundle, now)
    page = Paginator(download_events_for_grant(grant), EVENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "access/review/grant_downloads.html",
        {"grant": grant, "bundles": bundles, "page": page, "events": page.object_list, "query": ""},
    )


@reviewer_page
@require_POST
def review_bundle_unsuspend(request, pk: int, bundle_id: int):
    grant = _grant_get_for_manager(request, pk)
    bundle = get_object_or_404(DownloadBundle, pk=bundle_id, grant=grant)
    try:
        bundle_unsuspend(bundle=bundle, actor=request.user, reason=request.POST.get("reason", ""), request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except (StateConflict, PermissionDenied) as exc:
        messages.error(request, getattr(exc, "message", None) or str(exc))
    else:
        messages.success(request, f"The suspension is lifted; {grant.user.email} can download again.")
    return redirect(reverse("review-grant-downloads", args=[grant.pk]))
