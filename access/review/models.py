"""The reviewers' records: notes, decisions (with the policy rule when a policy decided) and
rejection templates.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.requests.models import AccessRequest


class ReviewNote(models.Model):
    """Reviewer-only notes; never shown to the applicant."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    REQUEST_INFO = "request_info", "Request more information"


class ReviewDecision(models.Model):
    """One reviewer's (or one policy's) decision in one review round.

    Approvals are counted per variant across distinct reviewers of the current
    round, which is how the two-person rule is enforced."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_rule = models.CharField(max_length=60, blank=True, help_text="Set when a policy, not a person, decided.")
    kind = models.CharField(max_length=20, choices=DecisionKind.choices)
    variants = models.ManyToManyField(ModelVariant, blank=True, related_name="+")
    reason = models.TextField(blank=True)
    review_round = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class RejectionTemplate(models.Model):
    """Editable reasons reviewers pick from when rejecting."""

    title = models.CharField(max_length=100, unique=True)
    text = models.TextField()
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["title"]

    def __str__(self):
        return self.title
