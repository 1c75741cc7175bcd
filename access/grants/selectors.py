"""Reads about grants: the status a grant is enforced with, the grants a user holds or a reviewer
manages, and a user's access state per variant."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from access.catalog.selectors import licenses_current_by_family
from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from access.requests.models import OPEN_REQUEST_STATUSES, RequestedVariant

ACCESS_NONE = "none"
ACCESS_STATES = ("none", "requested", "license_required", "active", "suspended", "revoked", "expired")


def grant_status_effective(*, status: str, expires_at, needs_license: bool, now) -> str:
    """The status a grant is enforced with: a stored ``active`` one whose holder has not
    accepted the family's current license counts as ``license_required``; an ``active`` or
    ``license_required`` one whose end date has passed counts as ``expired`` even before the
    hourly sweep stores it. The gateway's one-query path uses the same rule."""
    if status in (GrantStatus.ACTIVE, GrantStatus.LICENSE_REQUIRED) and expires_at and expires_at <= now:
        return GrantStatus.EXPIRED
    if status == GrantStatus.ACTIVE and needs_license:
        return GrantStatus.LICENSE_REQUIRED
    return status


def grants_annotate_effective_status(grants) -> list:
    """Set ``effective_status`` and ``license_required`` (the license to accept, or None)
    on each grant, in a fixed number of queries whatever their number.

    A stored ``active`` grant whose holder has not accepted the family's current
    license counts as ``license_required``; one whose end date has passed counts
    as ``expired`` even before the hourly sweep stores it."""
    grants = list(grants)
    families = {grant.variant.family for grant in grants}
    current = licenses_current_by_family(families)
    # One query for every holder on the page (a reviewer's grant list has many).
    accepted: set[tuple[int, int]] = set()
    if grants and current:
        accepted = set(
            LicenseAcceptance.objects.filter(
                user_id__in={grant.user_id for grant in grants},
                license_id__in={license_version.pk for license_version in current.values()},
            ).values_list("user_id", "license_id")
        )
    now = timezone.now()
    for grant in grants:
        license_now = current.get(grant.variant.family_id)
        needs_license = license_now is not None and (grant.user_id, license_now.pk) not in accepted
        status = grant_status_effective(
            status=grant.status, expires_at=grant.expires_at, needs_license=needs_license, now=now
        )
        grant.effective_status = status
        grant.license_required = license_now if status == GrantStatus.LICENSE_REQUIRED else None
    return grants


# What the holder reads for each effective status on their own pages ("My access").
HOLDER_STATUS_LABELS = {
    GrantStatus.LICENSE_REQUIRED: "Accept the license",
    GrantStatus.ACTIVE: "Active",
    GrantStatus.SUSPENDED: "Access suspended",
    GrantStatus.REVOKED: "Access revoked",
    GrantStatus.EXPIRED: "Access ended",
}


def grants_for_holder_page(user) -> list[Grant]:
    """The holder's grants, newest first, each with ``effective_status`` and ``status_label``."""
    grants = grants_annotate_effective_status(grants_for_user(user).order_by("-created_at", "-id"))
    for grant in grants:
        grant.status_label = HOLDER_STATUS_LABELS[grant.effective_status]
    return grants


def grant_effective_status(grant) -> str:
    return grants_annotate_effective_status([grant])[0].effective_status


def grant_is_usable(grant) -> bool:
    """True only for an active grant whose holder accepted the current license and that has not ended."""
    return grant_effective_status(grant) == "active"


def grants_for_user(user) -> QuerySet[Grant]:
    return Grant.objects.filter(user=user).select_related("variant__family", "user", "request")


def grant_get_for_holder(user, grant_id: int, *, missing: str = "No such grant.") -> Grant:
    """The user's own grant with its effective status, or 404 (``missing``): nobody learns that
    another's exists. The first line of every view that takes a holder's grant id."""
    grant = grants_for_user(user).filter(pk=grant_id).first()
    if grant is None:
        raise Http404(missing)
    return grants_annotate_effective_status([grant])[0]


def grants_for_review(*, status: str = "", variant: str = "", email: str = "") -> QuerySet[Grant]:
    """Grants as reviewers list them, newest first: the review page and the API filter alike.
    ``email`` matches a whole address exactly (case aside) and part of one as a substring."""
    grants = Grant.objects.select_related("user", "variant__family", "request", "granted_by").order_by(
        "-created_at", "-id"
    )
    if status:
        grants = grants.filter(status=status)
    if variant:
        grants = grants.filter(variant__slug=variant)
    email = email.strip()
    if email:
        whole_address = "@" in email and "." in email.rsplit("@", 1)[1]
        matching = {"user__email__iexact": email} if whole_address else {"user__email__icontains": email}
        grants = grants.filter(**matching)
    return grants


def grant_manager_required(user) -> None:
    """403 unless the user is a reviewer who manages grants."""
    if not user.has_perm("access.manage_grants"):
        raise PermissionDenied("Only reviewers who manage grants can do this.")


def grant_get_for_manager(user, grant_id: int, *, missing: str = "No such grant.", acting: bool = False) -> Grant:
    """A grant for a reviewer who manages grants, with its effective status: 403 without that
    permission, 404 (``missing``) when there is none, and with ``acting`` (about to revoke,
    suspend or reinstate it) 403 for the reviewer's own grant, before anything else is read:
    decisions about one's own access are always someone else's (the grant services refuse them
    too). The first line of every reviewer view that takes a grant id."""
    grant_manager_required(user)
    grant = grants_for_review().filter(pk=grant_id).first()
    if grant is None:
        raise Http404(missing)
    if acting and grant.user_id == user.pk:
        raise PermissionDenied("You cannot manage your own access; another reviewer must.")
    return grants_annotate_effective_status([grant])[0]


def variant_access_for_user(user, variants) -> dict[str, str]:
    """The caller's access state per variant slug (docs/api.md ``access``): the state of
    their latest grant, else ``requested`` while a request is open, else ``none``."""
    access = {variant.slug: ACCESS_NONE for variant in variants}
    if not getattr(user, "is_authenticated", False) or not access:
        return access
    open_slugs = set(
        RequestedVariant.objects.filter(
            request__applicant=user, request__status__in=OPEN_REQUEST_STATUSES, variant__slug__in=access
        ).values_list("variant__slug", flat=True)
    )
    for slug in open_slugs:
        access[slug] = "requested"
    latest = {}
    for grant in grants_for_user(user).filter(variant__slug__in=access).order_by("created_at", "id"):
        latest[grant.variant.slug] = grant
    for grant in grants_annotate_effective_status(latest.values()):
        if grant.effective_status in ("revoked", "expired") and grant.variant.slug in open_slugs:
            continue  # a new request is under way; that is what the researcher cares about now
        access[grant.variant.slug] = grant.effective_status
    return access
