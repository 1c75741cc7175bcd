"""Catalog state changes: publishing a license version. And the sizes of the tiny demo variant."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access.audit.services import audit_event_record
from access.catalog.models import LicenseVersion, ModelFamily, license_text_sha256

# The local demo checkpoint (make_tiny_llama) of the llama-demo-tiny variant: LLaMA's architecture, tiny sizes.
TINY_DEMO = {"dim": 64, "n_layers": 2, "n_heads": 4, "vocab_size": 512, "multiple_of": 32}


def license_text_normalize(text: str) -> str:
    # Browsers submit CRLF; the digest must not depend on how the text arrived.
    return text.replace("\r\n", "\n").replace("\r", "\n").strip() + "\n"


@transaction.atomic
def license_publish(
    *,
    family: ModelFamily,
    version: str,
    title: str,
    text: str,
    effective_at: dt.datetime | None = None,
    actor=None,
    request=None,
) -> LicenseVersion:
    """Publish a new, immutable license version for a family.

    Once its effective date passes it becomes the current license: grants that
    accepted an older version need a new acceptance before they can be used.
    """
    text = license_text_normalize(text)
    if LicenseVersion.objects.filter(family=family, version=version).exists():
        raise ValidationError({"version": f"{family.name} already has a license version {version!r}."})
    license_version = LicenseVersion(
        family=family,
        version=version.strip(),
        title=title.strip(),
        text=text,
        sha256=license_text_sha256(text),
        effective_at=effective_at or timezone.now(),
        published_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    license_version.full_clean()
    license_version.save()
    audit_event_record(
        action="license.published",
        actor=actor,
        target=license_version,
        request=request,
        details={
            "family": family.slug,
            "version": license_version.version,
            "sha256": license_version.sha256,
            "effective_at": license_version.effective_at.isoformat(),
        },
    )
    return license_version

