"""Grants (entitlements) and license acceptances.

State machine of ``Grant.status`` (transitions only in ``access.grants.services``,
each audited):

    license_required ──accept current license──▶ active
    active ──suspend──▶ suspended ──reinstate──▶ active (or license_required)
    license_required/active/suspended ──revoke──▶ revoked      (final)
    license_required/active/suspended ──end date passes──▶ expired (final)

A stored ``active`` grant whose holder has not accepted the family's *current*
license is reported and enforced as ``license_required`` (see
``access.grants.selectors.grant_status_effective``): publishing a new license version
needs no sweep over grants, and a future-dated version takes effect on time.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from access.catalog.models import LicenseVersion, ModelVariant
from access.requests.models import AccessRequest


class GrantStatus(models.TextChoices):
    LICENSE_REQUIRED = "license_required", "Accept the license"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


LIVE_GRANT_STATUSES = (GrantStatus.LICENSE_REQUIRED, GrantStatus.ACTIVE, GrantStatus.SUSPENDED)


class Grant(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="grants")
    status = models.CharField(max_length=20, choices=GrantStatus.choices, default=GrantStatus.LICENSE_REQUIRED)
    request = models.ForeignKey(
        AccessRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True, help_text="Why access was granted without a request.")
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    expiry_reminder_sent_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    status_reason = models.TextField(blank=True, help_text="Reason for the last suspension or revocation.")
    blocks_new_requests = models.BooleanField(
        default=False, help_text="Set on revocation: the user may not apply again."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "variant"],
                condition=models.Q(status__in=["license_required", "active", "suspended"]),
                name="one_live_grant_per_user_variant",
            )
        ]
        indexes = [models.Index(fields=["user", "status"], name="grant_user_status_idx")]

    def __str__(self):
        return f"{self.user} · {self.variant.slug} ({self.status})"


class LicenseAcceptance(models.Model):
    """Append-only: one row each time a user accepts a license version."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="license_acceptances")
    license = models.ForeignKey(LicenseVersion, on_delete=models.PROTECT, related_name="acceptances")
    license_sha256 = models.CharField(max_length=64)
    grant = models.ForeignKey(Grant, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    accepted_at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)

    class Meta:
        ordering = ["-accepted_at", "-id"]
        indexes = [models.Index(fields=["user", "license"], name="acceptance_user_license_idx")]

    def __str__(self):
        return f"{self.user} accepted {self.license}"
