"""What a download request is answered: the outcomes, and the checks shared by a bundle's links,
script and manifest (retired, expired, grant ended, revoked, suspended, license outdated, leak
suspension), in the order they are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from access.distribution.models import DownloadBundle
from access.grants.models import GrantStatus
from access.grants.selectors import grants_annotate_effective_status


@dataclass(frozen=True)
class DownloadOutcome:
    """What the gateway answers: ``allowed`` or the reason for refusing, with the message to show."""

    name: str
    status: int
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.name == "allowed"


ALLOWED = DownloadOutcome("allowed", 200)
UNKNOWN = DownloadOutcome(
    "unknown", 404, "This download link is not valid. Copy the whole link, or create new links on {grants}."
)


def bundle_authorize(*, bundle: DownloadBundle | None, request=None) -> DownloadOutcome:
    """Checks shared by a bundle's links, script and manifest: unknown, retired, expired, grant, suspension."""
    if bundle is None:
        return UNKNOWN
    grant = bundle.grant

    def effective_status() -> str:
        return grants_annotate_effective_status([grant])[0].effective_status

    return bundle_outcome(
        now=timezone.now(),
        retired_at=bundle.retired_at,
        expires_at=bundle.expires_at,
        suspended_at=bundle.suspended_at,
        grant_expires_at=grant.expires_at,
        variant_name=grant.variant.name,
        effective_status=effective_status,
    )


def bundle_outcome(
    *, now, retired_at, expires_at, suspended_at, grant_expires_at, variant_name, effective_status
) -> DownloadOutcome:
    """The bundle checks in their order; ``effective_status`` is called only once the dates pass."""
    if retired_at is not None:
        return DownloadOutcome(
            "retired", 410, "These links were replaced by newer ones. Use the newest links on {grants}."
        )
    if expires_at <= now:
        return DownloadOutcome(
            "expired",
            410,
            f"These links expired at {expires_at:%Y-%m-%d %H:%M} UTC. Create new links on {{grants}}; "
            "files you have partly downloaded will resume.",
        )
    if grant_expires_at is not None and grant_expires_at <= now:
        return DownloadOutcome(
            "grant_ended",
            410,
            f"Your access to {variant_name} ended at {grant_expires_at:%Y-%m-%d %H:%M} UTC. "
            "Apply again to download it.",
        )
    status = effective_status()
    if status == GrantStatus.REVOKED:
        return DownloadOutcome("revoked", 403, "Your access to this model was revoked; these links no longer work.")
    if status == GrantStatus.SUSPENDED:
        return DownloadOutcome(
            "grant_suspended", 403, "Your access to this model is suspended; a reviewer will contact you."
        )
    if status == GrantStatus.EXPIRED:
        return DownloadOutcome("grant_expired", 403, "Your access to this model has ended. Apply again on the portal.")
    if status == GrantStatus.LICENSE_REQUIRED:
        return DownloadOutcome(
            "license_outdated",
            403,
            "The model's license has changed. Accept the current license on {grants}; these links then work again.",
        )
    if suspended_at is not None:
        return DownloadOutcome(
            "bundle_suspended",
            403,
            "These links are suspended because they were used from unusually many places. "
            "A reviewer will contact you; do not share download links.",
        )
    return ALLOWED


def resume_slack_bytes(file_size: int) -> int:
    """Bytes a link allows beyond its downloads x the file's size: what a server has sent into
    the network's buffers when a client drops, which the client asks for again when it resumes
    from what it received. At most half the file, so it never adds up to another copy."""
    return min(settings.DOWNLOAD_RESUME_SLACK_BYTES, file_size // 2)


def allowance_bytes(*, max_downloads: int, file_size: int) -> int:
    """All the bytes a link may hand out: its downloads x the file's size, plus the resume slack."""
    return max_downloads * file_size + resume_slack_bytes(file_size)


def exhausted(link, wanted_bytes: int | None = None) -> DownloadOutcome:
    """The refusal for a request whose bytes do not fit in what is left of the link's allowance
    (``max_downloads`` copies of its file, counted in bytes)."""
    allowance = allowance_bytes(max_downloads=link.max_downloads, file_size=link.file_size)
    left = max(allowance - link.bytes_reserved, 0)
    if left <= resume_slack_bytes(link.file_size) or wanted_bytes is None:
        message = (
            f"This file's link was used for all of its {link.max_downloads} downloads. "
            "Create new links on {grants}; a partly downloaded file resumes with them."
        )
    else:
        message = (
            f"This file's link has {left} bytes left of its {link.max_downloads} downloads, fewer than the "
            f"{wanted_bytes} asked for. Resume a partly downloaded file (for example curl -C -), "
            "or create new links on {grants}."
        )
    return DownloadOutcome("exhausted", 403, message)
