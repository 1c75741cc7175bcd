"""Who may use which model in the sandbox: exactly while the download gateway would serve them.

A variant is usable by a user when it has ``sandbox`` on, is listed, and the user holds a grant
for it whose effective status is ``active`` (current license accepted, not suspended, revoked or
expired) and whose download links are not suspended by the leak rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from access.catalog.models import ModelVariant
from access.distribution.selectors import grants_with_links_suspended
from access.grants.models import GrantStatus
from access.grants.selectors import grants_annotate_effective_status, grants_for_user


@dataclass(frozen=True)
class SandboxRefusal:
    """Why a user may not use a variant now, with what to do; ``status`` 404 when the model is
    not offered in the sandbox at all, 403 when it is but not to this user now."""

    status: int
    code: str
    message: str


def _latest_grants(user, variants) -> dict[int, object]:
    """The user's latest grant per variant id, each with its effective status."""
    latest = {}
    for grant in grants_for_user(user).filter(variant__in=variants).order_by("created_at", "id"):
        latest[grant.variant_id] = grant
    grants = grants_annotate_effective_status(latest.values())
    suspended = grants_with_links_suspended([grant.pk for grant in grants])
    for grant in grants:
        grant.links_suspended = grant.pk in suspended
    return latest


def _usable(grant) -> bool:
    return grant is not None and grant.effective_status == GrantStatus.ACTIVE and not grant.links_suspended


def sandbox_variants_for_user(user) -> list[ModelVariant]:
    """The variants the user may run in the sandbox now, in catalog order."""
    if not getattr(user, "is_authenticated", False):
        return []
    variants = list(ModelVariant.objects.filter(sandbox=True, is_listed=True).select_related("family"))
    latest = _latest_grants(user, variants)
    return [variant for variant in variants if _usable(latest.get(variant.pk))]


def sandbox_refusal(user, slug: str) -> tuple[ModelVariant | None, SandboxRefusal | None]:
    """The variant named ``slug`` and None if the user may run it now, else why not."""
    variant = ModelVariant.objects.filter(slug=slug, sandbox=True, is_listed=True).select_related("family").first()
    if variant is None:
        return None, SandboxRefusal(
            404, "model_not_found", f"The model {slug!r} does not exist in the sandbox. GET /v1/models lists yours."
        )
    grant = _latest_grants(user, [variant]).get(variant.pk)
    if _usable(grant):
        return variant, None
    if grant is None:
        message = f"You have no access to {variant.name}. Apply for it on the portal; approved models appear here."
    elif grant.links_suspended:
        message = (
            f"Your access to {variant.name} is on hold: your download links were used from unusually many places. "
            "A reviewer will contact you."
        )
    elif grant.effective_status == GrantStatus.LICENSE_REQUIRED:
        message = f"Accept the current license of {variant.family.name} on the portal's grants page first."
    else:
        message = f"Your access to {variant.name} is {grant.effective_status}; the sandbox is closed to it."
    return None, SandboxRefusal(403, "model_access_denied", message)
