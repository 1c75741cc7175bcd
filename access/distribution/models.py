"""Weight files, download bundles and links, and the gateway's request log.

A researcher with a usable grant creates a ``DownloadBundle``: one ``DownloadLink``
per ``WeightFile`` of the grant's variant. A link's URL carries a token signed with
the site's secret key around the link's random ``public_id`` (see
``access.distribution.tokens``), so it is unguessable, cannot be forged from a copy
of the database alone, and can be shown again on the researcher's page. Creating a
new bundle retires the previous one. Every request to the gateway, good or bad,
leaves one ``DownloadEvent``.
"""

import secrets

from django.db import models
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.grants.models import Grant


def _public_id() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits


FORMATS = ("meta", "hf")  # Meta's original layout; transformers' layout, its files named under HF_FOLDER
HF_FOLDER = "hf/"


def weight_file_format(name: str) -> str:
    """Which file set a published file belongs to: "hf" (named under hf/) or "meta"."""
    return "hf" if name.startswith(HF_FOLDER) else "meta"


class WeightFile(models.Model):
    """One published file of a variant, as stored by ``publish_weights``."""

    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="weight_files")
    name = models.CharField(max_length=200, help_text="File name inside the variant's folder, e.g. consolidated.00.pth")
    storage_key = models.CharField(max_length=500, unique=True, help_text="Object key / path in weight storage.")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    md5 = models.CharField(max_length=32)
    published_at = models.DateTimeField(default=timezone.now)
    layout = models.JSONField(
        null=True,
        blank=True,
        help_text="Where a torch.save file's entries and tensors lie (inference.llama.torch_zip), read once when "
        "published; empty for files without weights, which are sent unchanged.",
    )

    class Meta:
        ordering = ["variant", "name"]
        constraints = [models.UniqueConstraint(fields=["variant", "name"], name="weight_file_unique_name")]

    def __str__(self):
        return f"{self.variant.slug}/{self.name}"


class WeightCopy(models.Model):
    """One recipient's marked copy of a weight file: never stored, made by the gateway while it
    streams from the original, and described here by what identifies it (grant, the original's
    sha256, the master key it was marked with) and its checksums, computed once by a Celery task
    (``access.distribution.fingerprints``). An exact leaked copy is named by its sha256 alone."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="weight_copies")
    file = models.ForeignKey(WeightFile, on_delete=models.PROTECT, related_name="copies")
    file_sha256 = models.CharField(max_length=64, help_text="The original's sha256 the copy was made from.")
    key_id = models.CharField(max_length=40, help_text="Which FINGERPRINT_KEYS entry marked it.")
    created_at = models.DateTimeField(default=timezone.now)
    crcs = models.JSONField(null=True, blank=True, help_text="CRC-32 of each marked zip entry, once computed.")
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    md5 = models.CharField(max_length=32, blank=True)
    prepared_at = models.DateTimeField(null=True, blank=True, help_text="When its checksums were computed.")

    class Meta:
        ordering = ["grant", "file__name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["grant", "file", "file_sha256", "key_id"], name="weight_copy_unique")
        ]

    def __str__(self):
        return f"{self.file} for grant {self.grant_id}"


class DownloadBundle(models.Model):
    """The links handed out at once for one grant."""

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="download_bundles")
    public_id = models.CharField(max_length=32, unique=True, default=_public_id, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True, help_text="Set when a newer bundle replaced this one.")
    suspended_at = models.DateTimeField(null=True, blank=True, help_text="Set by the leak rule or a reviewer.")
    suspended_reason = models.TextField(blank=True)
    # Both nullable, so workers of the previous release can still create bundles during a rollout.
    leak_flagged_networks = models.JSONField(
        null=True, blank=True, help_text="The networks the leak rule counted when it suspended these links."
    )
    leak_cleared_networks = models.JSONField(
        null=True, blank=True, help_text="Networks a reviewer cleared when lifting a suspension: the leak rule skips them."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["grant", "retired_at"], name="bundle_grant_retired_idx")]

    def __str__(self):
        return f"bundle {self.public_id} of {self.grant}"


class DownloadLink(models.Model):
    """One file of a bundle, good for ``max_downloads`` copies of it, counted in bytes.

    Every GET reserves the bytes it asks for (the whole file, or its Range) by one guarded
    UPDATE, which never lets ``bytes_reserved`` pass ``max_downloads`` x the file's size plus a
    resume slack of at most half the file (``access.distribution.rules.allowance_bytes``); a
    stream that ends short gives back what it did not send. ``downloads_used`` is the
    reservation in whole files, rounded up after the slack: a download split into Range
    requests (curl -C -, aria2c, hf_transfer) costs one download, and no mix of Ranges gets
    more than the allowance.
    """

    bundle = models.ForeignKey(DownloadBundle, on_delete=models.CASCADE, related_name="links")
    file = models.ForeignKey(WeightFile, on_delete=models.PROTECT, related_name="links")
    copy = models.ForeignKey(
        WeightCopy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="links",
        help_text="The recipient's marked copy this link sends; empty: the file as published.",
    )
    public_id = models.CharField(max_length=32, unique=True, default=_public_id, editable=False)
    max_downloads = models.PositiveIntegerField()
    downloads_used = models.PositiveIntegerField(default=0)
    bytes_reserved = models.BigIntegerField(
        default=0, help_text="Bytes handed out through this link, less those a stream ended short of sending."
    )

    class Meta:
        ordering = ["bundle", "file__name"]
        constraints = [
            models.UniqueConstraint(fields=["bundle", "file"], name="link_one_per_file"),
            models.CheckConstraint(
                condition=models.Q(downloads_used__lte=models.F("max_downloads")), name="link_count_within_limit"
            ),
        ]

    @property
    def downloads_left(self) -> int:
        return max(self.max_downloads - self.downloads_used, 0)

    def __str__(self):
        return f"{self.file} ({self.downloads_used}/{self.max_downloads})"


class DownloadEvent(models.Model):
    """Append-only log of gateway requests: who fetched what, from where, and what they got."""

    # Every gateway request inserts a row, so the table carries no more than it must. No database
    # foreign-key constraints: each one is a trigger that locks the referenced row FOR KEY SHARE,
    # and concurrent downloads of one file all lock the same rows. The gateway writes ids it has
    # just read, and Django's PROTECT still keeps referenced rows from being deleted. No
    # single-column indexes on bundle and grant: the composite indexes below start with them.
    link = models.ForeignKey(
        DownloadLink, null=True, blank=True, on_delete=models.PROTECT, related_name="events", db_constraint=False
    )
    bundle = models.ForeignKey(
        DownloadBundle,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    grant = models.ForeignKey(
        Grant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="download_events",
        db_index=False,
        db_constraint=False,
    )
    file = models.ForeignKey(
        WeightFile, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    network = models.CharField(max_length=64, blank=True, help_text="The client's /24 (IPv4) or /48 (IPv6).")
    user_agent = models.CharField(max_length=512, blank=True)
    range_header = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=40, help_text="served, redirected, expired, exhausted, revoked, ...")
    counted = models.BooleanField(default=False, help_text="This request used one of the link's downloads.")
    bytes_sent = models.BigIntegerField(null=True, blank=True, help_text="Known when the portal streams the file.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The leak rule's question, per request: which networks used this grant lately?
            models.Index(fields=["grant", "network", "created_at"], name="dl_event_grant_net_idx"),
            models.Index(fields=["grant", "created_at"], name="dl_event_grant_time_idx"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.outcome} {self.status_code}"
