"""Reads for the catalog: listed variants, families, and the license version in force."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from access.catalog.models import LicenseVersion, ModelFamily, ModelVariant


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
        LicenseVersion.objects.effective()
        .filter(family_id__in=family_ids)
        .order_by("family_id", "-effective_at", "-pk")
    ):
        current.setdefault(license_version.family_id, license_version)
    return current
