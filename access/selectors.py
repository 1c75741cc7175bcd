"""Reads for the catalog and licenses."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from access.models import LicenseVersion, ModelFamily, ModelVariant

ACCESS_NONE = "none"
ACCESS_STATES = ("none", "requested", "license_required", "active", "suspended", "revoked", "expired")


def variants_listed() -> QuerySet[ModelVariant]:
    return ModelVariant.objects.filter(is_listed=True).select_related("family")


def variant_get_listed(slug: str) -> ModelVariant:
    variant = variants_listed().filter(slug=slug).first()
    if variant is None:
        raise Http404(f"No model named {slug!r}. GET /api/v1/models lists the models you can request.")
    return variant


def families_with_variants() -> QuerySet[ModelFamily]:
    return ModelFamily.objects.prefetch_related(
        Prefetch("variants", queryset=ModelVariant.objects.filter(is_listed=True))
    )


def license_current(family: ModelFamily) -> LicenseVersion | None:
    """The license version in force now: the latest whose effective date has passed."""
    return LicenseVersion.objects.effective().filter(family=family).order_by("-effective_at", "-pk").first()


def licenses_current_by_family(families) -> dict[int, LicenseVersion]:
    """Current license per family id, in one query whatever the number of families."""
    current: dict[int, LicenseVersion] = {}
    family_ids = {family.pk for family in families}
    for license_version in (
        LicenseVersion.objects.effective().filter(family_id__in=family_ids).order_by("family_id", "-effective_at", "-pk")
    ):
        current.setdefault(license_version.family_id, license_version)
    return current


def licenses_accepted(user, license_ids) -> set[int]:
    from access.models import LicenseAcceptance

    return set(
        LicenseAcceptance.objects.filter(user=user, license_id__in=license_ids).values_list("license_id", flat=True)
    )


def grant_status_effective(*, status: str, expires_at, needs_license: bool, now) -> str:
    """The status a grant is enforced with: a stored ``active`` one whose holder has not
    accepted the family's current license counts as ``license_required``; an ``active`` or
    ``license_required`` one whose end date has passed counts as ``expired`` even before the
    hourly sweep stores it. The gateway's one-query path uses the same rule."""
    from access.models import GrantStatus

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
    from access.models import GrantStatus

    grants = list(grants)
    families = {grant.variant.family for grant in grants}
    current = licenses_current_by_family(families)
    from access.models import LicenseAcceptance

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


def grant_effective_status(grant) -> str:
    return grants_annotate_effective_status([grant])[0].effective_status


def grant_is_usable(grant) -> bool:
    """True only for an active grant whose holder accepted the current license and that has not ended."""
    return grant_effective_status(grant) == "active"


def grants_for_user(user) -> QuerySet:
    from access.models import Grant

    return Grant.objects.filter(user=user).select_related("variant__family", "user", "request")


def variant_access_for_user(user, variants) -> dict[str, str]:
    """The caller's access state per variant slug (API.md ``access``): the state of
    their latest grant, else ``requested`` while a request is open, else ``none``."""
    from access.models import OPEN_REQUEST_STATUSES, RequestedVariant

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
