"""Download bundles: one signed link per published file of a grant's variant, made on request
by the grant's holder (``bundle_create``, which retires the previous bundle), shown as files with
checksums and URLs, and suspended and lifted (``bundle_suspend``, ``bundle_unsuspend``).
Counting a link's downloads is the gateway's (``access.distribution.gateway.counting``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from access.audit.services import audit_event_record
from access.distribution.fingerprints import (
    CHECKLIST,
    ChecksumsPreparing,
    CopyOutdated,
    recipient_checklist,
    weight_copies_for_bundle,
    weight_copies_prepare_later,
)
from access.distribution.models import DownloadBundle, DownloadLink, WeightFile
from access.distribution.rules import allowance_bytes
from access.distribution.tokens import download_absolute_url, grants_page_url, link_path
from access.grants.models import Grant, GrantStatus
from access.grants.selectors import grants_annotate_effective_status
from access.notifications.services import absolute_url
from portal.errors import LimitReached, StateConflict


def unusable_grant_message(grant: Grant) -> str:
    """Why a grant that is not active gets no download links, and what to do (the API and pages say it)."""
    status = grant.effective_status
    grants_page = grants_page_url()
    if status == GrantStatus.LICENSE_REQUIRED:
        version = grant.license_required.version if grant.license_required else "current"
        return (
            f"Accept the {version} license of {grant.variant.family.name} first, on {grants_page}; "
            "then create the download links."
        )
    if status == GrantStatus.SUSPENDED:
        return "Your access is suspended, so no download links can be made. A reviewer will contact you."
    if status == GrantStatus.REVOKED:
        return "Your access was revoked, so no download links can be made."
    if status == GrantStatus.EXPIRED:
        return f"Your access to {grant.variant.name} has ended. Apply again on {absolute_url(reverse('apply'))}."
    return f"This grant is {status}; download links need an active grant."


@transaction.atomic
def bundle_create(*, grant: Grant, user, request=None) -> DownloadBundle:
    """One link per published file of the grant's variant; retires the grant's previous bundle."""
    grant = Grant.objects.select_for_update().select_related("variant__family", "user").get(pk=grant.pk)
    if grant.user_id != getattr(user, "pk", None):
        raise PermissionDenied("Only the holder of a grant can create its download links.")
    grants_annotate_effective_status([grant])
    if grant.effective_status != GrantStatus.ACTIVE:
        raise StateConflict(unusable_grant_message(grant), code="grant_not_usable")
    latest = DownloadBundle.objects.filter(grant=grant).order_by("-created_at", "-id").first()
    if latest is not None and latest.suspended_at is not None:
        # Otherwise new links would undo the leak rule the moment it fired.
        raise StateConflict(
            "Your download links were suspended because they were used from unusually many places. "
            "A reviewer will look into it and contact you; new links can be made once they have.",
            code="links_suspended",
        )
    _bundle_rate_check(grant)
    files = list(WeightFile.objects.filter(variant=grant.variant).order_by("name"))
    if not files:
        raise StateConflict(
            f"No weight files of {grant.variant.name} have been published yet. Try again later; "
            "you will not need a new request.",
            code="nothing_published",
        )
    now = timezone.now()
    expires_at = now + dt.timedelta(hours=settings.DOWNLOAD_LINK_TTL_HOURS)
    if grant.expires_at is not None:
        expires_at = min(expires_at, grant.expires_at)
    retired = list(
        DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).values_list("public_id", flat=True)
    )
    DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).update(retired_at=now)
    bundle = DownloadBundle(grant=grant, created_at=now, expires_at=expires_at)
    bundle.full_clean()
    bundle.save()
    # Each weight file of a variant with fingerprints on is sent as the grant's own marked copy.
    copies = weight_copies_for_bundle(grant, files)
    DownloadLink.objects.bulk_create(
        DownloadLink(
            bundle=bundle,
            file=weight_file,
            copy=copies.get(weight_file.pk),
            max_downloads=settings.DOWNLOAD_LINK_MAX_DOWNLOADS,
        )
        for weight_file in files
    )
    weight_copies_prepare_later(copies.values())
    audit_event_record(
        action="download.bundle_created",
        actor=user,
        target=bundle,
        request=request,
        details={
            "grant": grant.pk,
            "variant": grant.variant.slug,
            "files": len(files),
            "marked_files": len(copies),
            "max_downloads": settings.DOWNLOAD_LINK_MAX_DOWNLOADS,
            "expires_at": expires_at.isoformat(),
            "retired_bundles": retired,
        },
    )
    return bundle


def _bundle_rate_check(grant: Grant) -> None:
    """At most DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY new bundles per grant in 24 hours: each new bundle
    is a fresh allowance of downloads, and fresh links to hand to others."""
    limit = settings.DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY
    since = timezone.now() - dt.timedelta(hours=24)
    recent = list(
        DownloadBundle.objects.filter(grant=grant, created_at__gt=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return
    retry_after = recent[-1] + dt.timedelta(hours=24) - timezone.now()
    raise LimitReached(
        f"New download links can be made at most {limit} {'time' if limit == 1 else 'times'} a day per grant. "
        f"Use your current links, or try again at {recent[-1] + dt.timedelta(hours=24):%Y-%m-%d %H:%M} UTC.",
        code="too_many_bundles",
        retry_after_seconds=int(retry_after.total_seconds()) + 1,
    )


@transaction.atomic
def bundle_live_or_create(*, grant: Grant, user, request=None) -> DownloadBundle:
    """The grant's live bundle, or a new one when there is none (the hub endpoint's downloads
    count against it). Under the grant's lock, so parallel first requests (snapshot_download
    fetches eight files at once) make one bundle, not eight that retire each other."""
    Grant.objects.select_for_update().filter(pk=grant.pk).first()
    bundle = bundle_current(grant)
    if bundle is not None and bundle.expires_at > timezone.now():
        return bundle
    return bundle_create(grant=grant, user=user, request=request)


def bundle_current(grant: Grant) -> DownloadBundle | None:
    """The grant's live (not retired) bundle, if any."""
    return DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).order_by("-created_at", "-id").first()


_PREPARING = object()  # the recipient's checklist, while its copies' checksums are computed


def _link_checksums(link: DownloadLink, checklist) -> tuple[str | None, str | None]:
    """(sha256, md5) of the bytes this link sends: the recipient's copy's, None while they are
    being computed; the recipient's checklist's; or the published file's."""
    if link.copy_id is not None:
        # Not ready, or made from a version of the file since republished: being computed anew.
        ready = link.copy.prepared_at is not None and link.copy.file_sha256 == link.file.sha256
        return (link.copy.sha256, link.copy.md5) if ready else (None, None)
    if link.file.name == CHECKLIST and checklist is _PREPARING:
        return None, None
    if link.file.name == CHECKLIST and checklist is not None:
        return hashlib.sha256(checklist).hexdigest(), hashlib.md5(checklist, usedforsecurity=False).hexdigest()
    return link.file.sha256, link.file.md5


def bundle_files(bundle: DownloadBundle, request=None) -> list[dict]:
    """The bundle's files with their gateway URLs and the checksums of the recipient's own bytes,
    as the API and the pages show them (sha256 and md5 None while a copy's are being computed;
    ``marked``: the file carries the recipient's fingerprint)."""
    links = list(bundle.links.select_related("file", "copy").order_by("file__name"))
    try:
        checklist = recipient_checklist(bundle.pk, links) if any(link.copy_id for link in links) else None
    except ChecksumsPreparing:  # CopyOutdated too
        checklist = _PREPARING
    files = []
    for link in links:
        sha256, md5 = _link_checksums(link, checklist)
        files.append({
            "name": link.file.name,
            "size": link.file.size,
            "sha256": sha256,
            "md5": md5,
            "marked": link.copy_id is not None,
            # Made from a version of the file since published again: new links send the new one.
            "outdated": link.copy_id is not None and link.copy.file_sha256 != link.file.sha256,
            "url": download_absolute_url(link_path(link), request),
            "downloads_left": link.downloads_left,
            "bytes_left": max(
                allowance_bytes(max_downloads=link.max_downloads, file_size=link.file.size) - link.bytes_reserved, 0
            ),
        })  # fmt: skip
    return files


def bundle_checksums_ready(files: list[dict]) -> bool:
    return all(entry["sha256"] is not None for entry in files)


def bundle_manifest(bundle: DownloadBundle, request=None) -> dict:
    """The manifest (and download.sh's data). Raises ChecksumsPreparing while the recipient's
    checksums are being computed: a script without them could not verify the copy."""
    files = bundle_files(bundle, request)
    if any(entry["outdated"] for entry in files):
        raise CopyOutdated()
    if not bundle_checksums_ready(files):
        raise ChecksumsPreparing(
            "Your copy's checksums are still being computed (a minute or two for a large model), and the "
            "script and manifest carry them. Try again shortly; the downloads page shows when they are ready."
        )
    return {
        "model": bundle.grant.variant.slug,
        "bundle": bundle.public_id,
        "expires_at": bundle.expires_at.isoformat(),
        "files": [{key: entry[key] for key in ("name", "url", "size", "sha256", "md5")} for entry in files],
    }


@transaction.atomic
def bundle_suspend(
    *, bundle: DownloadBundle, reason: str, actor=None, request=None, networks: Iterable[str] = ()
) -> bool:
    """Block every link of the bundle at once. ``networks``: those the leak rule counted, which a
    reviewer who lifts the suspension clears. False if it was already suspended."""
    locked = (
        DownloadBundle.objects.select_for_update().select_related("grant__user", "grant__variant").get(pk=bundle.pk)
    )
    if locked.suspended_at is not None:
        bundle.suspended_at, bundle.suspended_reason = locked.suspended_at, locked.suspended_reason
        return False
    locked.suspended_at = timezone.now()
    locked.suspended_reason = reason.strip()
    locked.leak_flagged_networks = sorted(networks) if networks else None
    locked.save(update_fields=["suspended_at", "suspended_reason", "leak_flagged_networks"])
    bundle.suspended_at, bundle.suspended_reason = locked.suspended_at, locked.suspended_reason
    audit_event_record(
        action="download.bundle_suspended",
        actor=actor,
        target=locked,
        request=request,
        details={"grant": locked.grant_id, "user": locked.grant.user.email, "reason": locked.suspended_reason},
    )
    return True


@transaction.atomic
def bundle_unsuspend(*, bundle: DownloadBundle, actor, reason: str, request=None) -> DownloadBundle:
    """A reviewer lifts a suspension after looking into it: the links work again (if not expired
    or replaced) and the researcher may create new ones."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the suspension is lifted; it goes in the audit log."]})
    locked = DownloadBundle.objects.select_for_update().select_related("grant__user").get(pk=bundle.pk)
    if locked.grant.user_id == getattr(actor, "pk", None):
        raise PermissionDenied("You cannot lift a suspension of your own download links.")
    if locked.suspended_at is None:
        raise StateConflict("These links are not suspended.", code="not_suspended")
    previous = locked.suspended_reason
    locked.suspended_at, locked.suspended_reason = None, ""
    # The networks the leak rule named in the suspension are the ones the reviewer looked into:
    # counted again, they would trip the rule at the next new network. Networks refused while
    # the links were suspended were named nowhere, so they still count.
    if locked.leak_flagged_networks:
        cleared = set(locked.leak_cleared_networks or ()) | set(locked.leak_flagged_networks)
        locked.leak_cleared_networks = sorted(cleared)
    locked.save(update_fields=["suspended_at", "suspended_reason", "leak_cleared_networks"])
    audit_event_record(
        action="download.bundle_unsuspended",
        actor=actor,
        target=locked,
        request=request,
        details={"grant": locked.grant_id, "reason": reason, "suspended_for": previous},
    )
    return locked
