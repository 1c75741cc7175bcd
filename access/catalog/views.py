"""The catalog's public pages: every listed model, one model's card, one license version's text."""

from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from access.catalog.models import LicenseVersion
from access.catalog.selectors import (
    families_with_variants,
    license_current,
    licenses_current_by_family,
    variant_get_listed,
    variants_listed,
)
from access.grants.selectors import variant_access_for_user


@require_GET
def catalog(request):
    """The public landing page: every listed model and the caller's access to it."""
    families = list(families_with_variants())
    variants = list(variants_listed())
    return render(
        request,
        "access/catalog.html",
        {
            "families": families,
            "licenses": licenses_current_by_family(families),
            "access": variant_access_for_user(request.user, variants),
        },
    )


@require_GET
def variant_detail(request, slug: str):
    variant = variant_get_listed(slug)
    return render(
        request,
        "access/variant_detail.html",
        {
            "variant": variant,
            "license": license_current(variant.family),
            "access": variant_access_for_user(request.user, [variant])[variant.slug],
        },
    )


@require_GET
def license_detail(request, license_id: int):
    license_version = get_object_or_404(LicenseVersion.objects.select_related("family"), pk=license_id)
    return render(
        request,
        "access/license_detail.html",
        {"license": license_version, "is_current": license_current(license_version.family) == license_version},
    )
