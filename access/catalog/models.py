"""Model families, their variants (one per size) and the family's license versions."""

import hashlib

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class ModelFamily(models.Model):
    """A family of released models (LLaMA) sharing one license."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    summary = models.TextField(blank=True)
    released_on = models.DateField(null=True, blank=True)
    training_languages = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model families"

    def __str__(self):
        return self.name


class ModelVariant(models.Model):
    """One size of a family (llama-7b). Access is requested and granted per variant."""

    family = models.ForeignKey(ModelFamily, on_delete=models.PROTECT, related_name="variants")
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    parameters = models.BigIntegerField(validators=[MinValueValidator(1)])
    training_tokens = models.BigIntegerField(validators=[MinValueValidator(0)])
    model_card = models.TextField(blank=True, help_text="Markdown. Raw HTML is shown as text, never run.")
    sandbox = models.BooleanField(default=False, help_text="Approved researchers may run it in the sandbox.")
    sandbox_max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most new tokens per sandbox completion; blank: SANDBOX_MAX_TOKENS."
    )
    sandbox_max_prompt_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest sandbox prompt in tokens; blank: SANDBOX_MAX_PROMPT_TOKENS."
    )
    approvals_required = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="How many different reviewers must approve a request (two-person rule).",
    )
    auto_approve_email_domains = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Institution email domains (e.g. 'uni.example.edu') whose requests are approved by policy. "
            "Empty: off. Never applies when two approvals are required."
        ),
    )
    auto_reject_embargoed = models.BooleanField(
        default=False, help_text="Reject requests from countries on the embargo list by policy."
    )
    meta_folder = models.CharField(
        max_length=20,
        blank=True,
        help_text="The folder Meta's download.sh fetches this size into (7B, 13B, 30B, 65B); empty: the slug.",
    )
    fingerprint = models.BooleanField(
        default=True,
        help_text=(
            "Each recipient's download of the weight files carries their own keyed marks, so a leaked copy names "
            "its grant (fingerprint_identify). Turning it off affects links created afterwards."
        ),
    )
    is_listed = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["family__name", "position", "parameters"]
        permissions = [
            ("review_access", "Can review research-access requests"),
            ("manage_grants", "Can grant, suspend, reinstate and revoke access"),
        ]

    def __str__(self):
        return self.name


def license_text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LicenseVersionQuerySet(models.QuerySet):
    def effective(self, at=None):
        return self.filter(effective_at__lte=at or timezone.now())


class LicenseVersion(models.Model):
    """An immutable version of a family's license. A new text is a new row.

    The version in force is the one with the latest ``effective_at`` that has
    passed; see ``access.catalog.selectors.license_current``.
    """

    family = models.ForeignKey(ModelFamily, on_delete=models.PROTECT, related_name="licenses")
    version = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    text = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)
    effective_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(default=timezone.now, editable=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = LicenseVersionQuerySet.as_manager()

    class Meta:
        ordering = ["family__name", "-effective_at"]
        constraints = [models.UniqueConstraint(fields=["family", "version"], name="license_version_unique")]
        permissions = [("publish_license", "Can publish a new license version")]

    def __str__(self):
        return f"{self.family.name} license {self.version}"
