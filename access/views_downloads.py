"""The researcher's downloads page for one grant: the current links with checksums,
expiry and downloads left, the download script and manifest, and a button that
creates new links (which retires the old ones). No new request is ever needed."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from access.models import Grant, GrantStatus
from access import views_apply
from access.selectors import grants_annotate_effective_status
from access.selectors_downloads import weights_published
from access.services.downloads import (
    bundle_create,
    bundle_current,
    bundle_files,
    bundle_manifest_path,
    bundle_script_path,
    download_absolute_url,
)
from portal.errors import StateConflict


def _grant_get_for_user(request, pk: int) -> Grant:
    """The caller's own grant with its effective status, or 404: nobody learns that another's exists."""
    return grants_annotate_effective_status([views_apply._grant_get_for_user(request, pk)])[0]


@login_required
@require_GET
def grant_downloads(request, pk: int):
    grant = _grant_get_for_user(request, pk)
    bundle = bundle_current(grant)
    now = timezone.now()
    expired = bundle is not None and bundle.expires_at <= now
    suspended = bundle is not None and bundle.suspended_at is not None
    usable = grant.effective_status == GrantStatus.ACTIVE
    published = weights_published(grant.variant)
    # Links are shown only while they can work; an old bundle's checksums are still worth showing.
    links_work = bundle is not None and usable and not expired and not suspended
    return render(
        request,
        "access/apply/grant_downloads.html",
        {
            "grant": grant,
            "bundle": bundle,
            "files": bundle_files(bundle, request) if bundle is not None else [],
            "expired": expired,
            "suspended": suspended,
            "usable": usable,
            "published": published,
            "links_work": links_work,
            "can_create": usable and published and not suspended,
            "script_url": download_absolute_url(bundle_script_path(bundle), request) if links_work else "",
            "manifest_url": download_absolute_url(bundle_manifest_path(bundle), request) if links_work else "",
            "ttl_hours": settings.DOWNLOAD_LINK_TTL_HOURS,
            "max_downloads": settings.DOWNLOAD_LINK_MAX_DOWNLOADS,
        },
    )


@login_required
@require_POST
def grant_downloads_create(request, pk: int):
    grant = _grant_get_for_user(request, pk)
    had_links = bundle_current(grant) is not None
    try:
        bundle = bundle_create(grant=grant, user=request.user, request=request)
    except StateConflict as exc:
        messages.warning(request, exc.message)
        return redirect("grant-downloads", grant.pk)
    valid_until = timezone.localtime(bundle.expires_at).strftime("%d %b %Y %H:%M %Z")
    replaced = " The previous links no longer work." if had_links else ""
    messages.success(request, f"New download links for {grant.variant.name}, valid until {valid_until}.{replaced}")
    return redirect("grant-downloads", grant.pk)
