"""The reviewers' view of one grant's downloads: its bundles (live, expired, replaced,
suspended) and every gateway request made with their links. Behind ``reviewer_page``
(MFA-verified session) and the grant-manager permission, like the grants page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from access.selectors import grants_annotate_effective_status
from access.selectors_downloads import bundles_for_grant, download_events_for_grant
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
