"""Research-access requests and their review.

State machine of ``AccessRequest.status`` (transitions only in
``access.requests.services`` and ``access.review.services``, each audited):

    submitted ──claim──▶ in_review ──approve (enough approvals)──▶ approved
        │  ▲                 │  │ ──reject──▶ rejected
        │  └──resubmit── info_requested ◀──request_info──┘
        └──────────────── any open state ──withdraw──▶ withdrawn

Approve, reject and request_info are also allowed straight from ``submitted``.
A variant that needs two approvals keeps the request ``in_review`` after the
first reviewer's approval; a resubmission starts a new review round, so earlier
approvals no longer count.
"""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_countries.fields import CountryField

from access.catalog.models import LicenseVersion, ModelVariant

# Crockford's alphabet without look-alikes (no I, L, O, U): easy to read out on the phone.
_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_request_reference() -> str:
    return "AR-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(6))


class OrganizationType(models.TextChoices):
    ACADEMIC = "academic", "Academic"
    GOVERNMENT = "government", "Government"
    CIVIL_SOCIETY = "civil_society", "Civil society"
    INDUSTRY_LAB = "industry_lab", "Industry research lab"
    OTHER = "other", "Other"


class RequestStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    IN_REVIEW = "in_review", "In review"
    INFO_REQUESTED = "info_requested", "More information requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


OPEN_REQUEST_STATUSES = (RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW, RequestStatus.INFO_REQUESTED)
QUEUE_STATUSES = (RequestStatus.SUBMITTED, RequestStatus.IN_REVIEW)


class AccessRequest(models.Model):
    reference = models.CharField(max_length=12, unique=True, default=new_request_reference, editable=False)
    applicant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests")
    status = models.CharField(max_length=20, choices=RequestStatus.choices, default=RequestStatus.SUBMITTED)

    full_name = models.CharField(max_length=200)
    affiliation = models.CharField(max_length=300)
    organization_type = models.CharField(max_length=20, choices=OrganizationType.choices)
    position = models.CharField(max_length=200)
    country = CountryField()
    use_case = models.TextField()
    publications = models.JSONField(default=list, blank=True)
    variants = models.ManyToManyField(ModelVariant, through="RequestedVariant", related_name="access_requests")
    license = models.ForeignKey(LicenseVersion, on_delete=models.PROTECT, related_name="+")

    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_requests"
    )
    review_round = models.PositiveIntegerField(default=1)
    rejection_reason = models.TextField(blank=True)
    grant_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    submit_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["submitted_at", "id"]
        indexes = [
            models.Index(fields=["status", "submitted_at"], name="request_queue_idx"),
            models.Index(fields=["applicant", "status"], name="request_applicant_idx"),
        ]

    def __str__(self):
        return self.reference

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_REQUEST_STATUSES


class VariantDecision(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DECLINED = "declined", "Declined"


class RequestedVariant(models.Model):
    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="requested_variants")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=VariantDecision.choices, default=VariantDecision.PENDING)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "variant"], name="requested_variant_unique")]
        ordering = ["variant__position"]

    def __str__(self):
        return f"{self.request.reference}: {self.variant.slug} ({self.decision})"


class ScreeningFlagCode(models.TextChoices):
    FREE_MAIL_DOMAIN = "free_mail_domain", "Free-mail email domain"
    EMBARGOED_COUNTRY = "embargoed_country", "Country on the embargo list"
    POSSIBLE_DUPLICATE = "possible_duplicate", "Possible duplicate or alternate account"
    PREVIOUSLY_REVOKED = "previously_revoked", "Applicant had access revoked before"
    SHORT_USE_CASE = "short_use_case", "Use case is short"


class ScreeningFlag(models.Model):
    """Raised automatically on submit; shown to reviewers only."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="flags")
    code = models.CharField(max_length=30, choices=ScreeningFlagCode.choices)
    reason = models.CharField(max_length=500)
    review_round = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["code"], name="flag_code_idx")]

    def __str__(self):
        return f"{self.request.reference}: {self.code}"


class MessageKind(models.TextChoices):
    INFO_REQUEST = "info_request", "Request for more information"
    APPLICANT_REPLY = "applicant_reply", "Applicant's reply"
    DECISION = "decision", "Decision"


class RequestMessage(models.Model):
    """The thread between reviewers and the applicant; the applicant sees all of it."""

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=MessageKind.choices)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
