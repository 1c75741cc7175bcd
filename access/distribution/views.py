"""The researcher's downloads page for one grant: the current links with checksums,
expiry and downloads left, the download script and manifest, and a button that
creates new links (which retires the old ones). No new request is ever needed.

The reviewers' view of one grant's downloads: its bundles (live, expired, replaced,
suspended) and every gateway request made with their links. Behind ``reviewer_page``
(MFA-verified session) and the grant-manager permission, like the grants page.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from access.catalog.models import ModelVariant
from access.distribution.bundles import (
    bundle_checksums_ready,
    bundle_create,
    bundle_current,
    bundle_files,
    bundle_unsuspend,
)
from access.distribution.identify import IdentifyError, fingerprint_identify
from access.distribution.models import HF_FOLDER, DownloadBundle, WeightFile
from access.distribution.selectors import bundles_for_grant, download_events_for_grant, weights_published
from access.distribution.tokens import (
    bundle_manifest_path,
    bundle_script_path,
    bundle_wildcard_path,
    download_absolute_url,
)
from access.grants.models import Grant, GrantStatus
from access.grants.selectors import grant_get_for_holder, grant_get_for_manager, grant_manager_required
from access.review.permissions import reviewer_page
from portal.errors import LimitReached, StateConflict

EVENTS_PAGE_SIZE = 100


# --- The holder's downloads page -------------------------------------------------------------


@login_required
@require_GET
def grant_downloads(request, pk: int):
    grant = grant_get_for_holder(request.user, pk)
    bundle = bundle_current(grant)
    now = timezone.now()
    expired = bundle is not None and bundle.expires_at <= now
    suspended = bundle is not None and bundle.suspended_at is not None
    usable = grant.effective_status == GrantStatus.ACTIVE
    published = weights_published(grant.variant)
    # Links are shown only while they can work; an old bundle's checksums are still worth showing.
    links_work = bundle is not None and usable and not expired and not suspended
    script_url = download_absolute_url(bundle_script_path(bundle), request) if links_work else ""
    files = bundle_files(bundle, request) if bundle is not None else []
    has_hf = WeightFile.objects.filter(variant=grant.variant, name__startswith=HF_FOLDER).exists()
    return render(
        request,
        "access/apply/grant_downloads.html",
        {
            "grant": grant,
            "bundle": bundle,
            "files": files,
            "checksums_ready": bundle_checksums_ready(files),
            "outdated": any(entry["outdated"] for entry in files),
            "any_marked": any(entry["marked"] for entry in files),
            "expired": expired,
            "suspended": suspended,
            "usable": usable,
            "published": published,
            "links_work": links_work,
            "can_create": usable and published and not suspended,
            "script_url": script_url,
            # For a cluster without a browser: the script, piped to sh, fills the current folder.
            "one_liner_curl": f"curl -fsSL {_single_quoted(script_url)} | sh" if links_work else "",
            "one_liner_wget": f"wget -qO- {_single_quoted(script_url)} | sh" if links_work else "",
            "manifest_url": download_absolute_url(bundle_manifest_path(bundle), request) if links_work else "",
            "wildcard_url": download_absolute_url(bundle_wildcard_path(bundle), request) if links_work else "",
            "meta_folder": grant.variant.meta_folder or grant.variant.slug,
            "has_hf": has_hf,
            "hub_endpoint": download_absolute_url("/hub", request),
            "hub_repo": f"{grant.variant.family.slug}/{grant.variant.slug}",
            "ttl_hours": settings.DOWNLOAD_LINK_TTL_HOURS,
            "max_downloads": settings.DOWNLOAD_LINK_MAX_DOWNLOADS,
        },
    )


def _single_quoted(text: str) -> str:
    # Always quoted, so the command reads the same whatever the URL holds.
    return "'" + text.replace("'", "'\"'\"'") + "'"


@login_required
@require_POST
def grant_downloads_create(request, pk: int):
    grant = grant_get_for_holder(request.user, pk)
    had_links = bundle_current(grant) is not None
    try:
        bundle = bundle_create(grant=grant, user=request.user, request=request)
    except (StateConflict, LimitReached) as exc:
        messages.warning(request, exc.message)
        return redirect("grant-downloads", grant.pk)
    valid_until = timezone.localtime(bundle.expires_at).strftime("%d %b %Y %H:%M %Z")
    replaced = " The previous links no longer work." if had_links else ""
    messages.success(request, f"New download links for {grant.variant.name}, valid until {valid_until}.{replaced}")
    return redirect("grant-downloads", grant.pk)


# --- The reviewers' download log -------------------------------------------------------------


# A grant in one of these states refuses every link, whatever the bundle's own state says.
DEAD_GRANT_REASONS = {
    GrantStatus.REVOKED: "grant revoked",
    GrantStatus.SUSPENDED: "grant suspended",
    GrantStatus.EXPIRED: "grant ended",
    GrantStatus.LICENSE_REQUIRED: "license not accepted",
}


def _bundle_state(bundle, now, grant_status: str) -> str:
    if bundle.retired_at is None and grant_status in DEAD_GRANT_REASONS:
        bundle.dead_reason = DEAD_GRANT_REASONS[grant_status]
        return "dead"
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
    grant = grant_get_for_manager(request.user, pk)
    now = timezone.now()
    bundles = list(bundles_for_grant(grant))
    for bundle in bundles:
        bundle.state = _bundle_state(bundle, now, grant.effective_status)
    page = Paginator(download_events_for_grant(grant), EVENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "access/review/grant_downloads.html",
        {"grant": grant, "bundles": bundles, "page": page, "events": page.object_list, "query": ""},
    )


@reviewer_page
@require_POST
def review_bundle_unsuspend(request, pk: int, bundle_id: int):
    grant = grant_get_for_manager(request.user, pk)
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


# --- Identifying a leaked copy ---------------------------------------------------------------


def _suspect_path(relative: str) -> Path:
    """A path the reviewer typed, inside FINGERPRINT_SUSPECT_DIR; ValidationError otherwise."""
    root = Path(settings.FINGERPRINT_SUSPECT_DIR).resolve()
    relative = relative.strip()
    if not relative or "\x00" in relative:
        raise ValidationError(f"Give the suspect's path inside {root}.")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValidationError(f"The suspect must be inside {root}; copy it there first.")
    if not path.exists():
        raise ValidationError(f"There is no {path}: copy the suspect into {root} first.")
    return path


@reviewer_page
def review_fingerprints(request):
    """Name the grant a leaked copy came from: a variant and a suspect's path on the server."""
    grant_manager_required(request.user)
    variants = list(ModelVariant.objects.filter(weight_files__layout__isnull=False).distinct().order_by("name"))
    form = {"variant": request.POST.get("variant", ""), "suspect": request.POST.get("suspect", "")}
    result, error = None, ""
    if request.method == "POST":
        variant = next((v for v in variants if v.slug == form["variant"]), None)
        try:
            if variant is None:
                raise ValidationError("Choose a model whose weights are published.")
            if variant.parameters > FINGERPRINT_PAGE_MAX_PARAMETERS:
                raise ValidationError(
                    f"{variant.name} is too large to identify within a page request (it holds the model twice in "
                    f"memory): run `python manage.py fingerprint_identify --variant {variant.slug} --suspect PATH` "
                    "on a machine with the weights."
                )
            path = _suspect_path(form["suspect"])
            result = fingerprint_identify(
                variant=variant, suspect=path, actor=request.user, request=request,
                confine_to=Path(settings.FINGERPRINT_SUSPECT_DIR).resolve(),
            )  # fmt: skip
        except ValidationError as exc:
            error = " ".join(exc.messages)
        except IdentifyError as exc:
            error = str(exc)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    grants = {}
    if result is not None:
        ids = [entry["grant"] for entry in result.candidates[:FINGERPRINT_SHOWN]]
        grants = {grant.pk: grant for grant in Grant.objects.filter(pk__in=ids).select_related("user")}
    return render(
        request,
        "access/review/fingerprints.html",
        {
            "variants": variants,
            "form": form,
            "error": error,
            "result": result,
            "shown": [
                {**entry, "grant_obj": grants.get(entry["grant"]), "accused": entry["grant"] in result.accused}
                for entry in result.candidates[:FINGERPRINT_SHOWN]
            ]
            if result
            else [],
            "suspect_dir": Path(settings.FINGERPRINT_SUSPECT_DIR).resolve(),
        },
        status=400 if error else 200,
    )


FINGERPRINT_SHOWN = 20
FINGERPRINT_PAGE_MAX_PARAMETERS = 1_500_000_000  # larger models: the command, on a machine sized for them
