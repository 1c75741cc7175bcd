"""The grants API's shapes, for holders and for reviewers, and the reviewers' inputs."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_date
from rest_framework import serializers

from access.catalog.models import LicenseVersion, ModelVariant
from access.catalog.serializers import UNKNOWN_LICENSE_MESSAGE, UNKNOWN_VARIANT_MESSAGE
from access.grants.models import Grant, GrantStatus
from access.grants.services import end_of_day_after, grant_end_check, grant_end_day_check
from portal.api.fields import RowIdField
from portal.models import User

# Reasons and notes: the services' one limit (portal.validators.text_length_check), in the schema too.
REASON_MAX_CHARS = settings.REVIEW_TEXT_MAX_CHARS


def user_by_email(email: str) -> User:
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise serializers.ValidationError("No account with this email address.")
    return user


class AcceptLicenseSerializer(serializers.Serializer):
    license_id = RowIdField(
        queryset=LicenseVersion.objects.all(),
        error_messages={"does_not_exist": UNKNOWN_LICENSE_MESSAGE},
        help_text="Id of the license version you read and accept (the one in force).",
    )


class GrantSerializer(serializers.ModelSerializer):
    """A grant. ``status`` is the effective one: a grant whose license has a new version
    reads ``license_required`` until the holder accepts the version in
    ``license_id_required``; one past its end date reads ``expired``."""

    variant = serializers.CharField(source="variant.slug")
    status = serializers.ChoiceField(choices=GrantStatus.choices, source="effective_status")
    license_id_required = serializers.SerializerMethodField()

    class Meta:
        model = Grant
        fields = ["id", "variant", "status", "license_id_required", "expires_at", "created_at", "status_reason"]
        read_only_fields = fields

    def get_license_id_required(self, grant) -> int | None:
        return grant.license_required.pk if grant.license_required else None


class GrantEndField(serializers.DateTimeField):
    """When grants end: an ISO 8601 date-time, or a bare date (``2027-03-31``), which ends when
    that day ends in the site's time zone, as "Access ends on" does on the review pages. In the
    future, and at most GRANT_MAX_DURATION_DAYS away."""

    def to_internal_value(self, value):
        try:
            day = parse_date(value.strip()) if isinstance(value, str) else None  # None: not date-shaped
        except ValueError:  # date-shaped, but no such day
            raise serializers.ValidationError("Use a date (YYYY-MM-DD) or an ISO 8601 date-time.") from None
        try:
            ends_at = end_of_day_after(grant_end_day_check(day)) if day else super().to_internal_value(value)
            return grant_end_check(ends_at)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


def review_text_field(**kwargs) -> serializers.CharField:
    """A reason or note people read, bounded by REVIEW_TEXT_MAX_CHARS as the services bound them."""
    return serializers.CharField(
        max_length=REASON_MAX_CHARS,
        error_messages={"max_length": "Keep this to {max_length} characters or fewer."},
        **kwargs,
    )


class GrantCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text="The researcher's account email.")
    variant = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=ModelVariant.objects.all(),
        error_messages={"does_not_exist": UNKNOWN_VARIANT_MESSAGE},
    )
    reason = review_text_field(help_text="Why access is granted without a request.")
    expires_at = GrantEndField(
        required=False,
        allow_null=True,
        help_text="End of the grant, a date-time or a date (it ends when that day ends), "
        f"at most {settings.GRANT_MAX_DURATION_DAYS} days ahead.",
    )

    def validate_email(self, value: str) -> User:
        return user_by_email(value)


class GrantRevokeSerializer(serializers.Serializer):
    reason = review_text_field(help_text="The researcher reads it.")
    block_new_requests = serializers.BooleanField(required=False, default=False)


class GrantSuspendSerializer(serializers.Serializer):
    reason = review_text_field(help_text="The researcher reads it.")


class GrantReinstateSerializer(serializers.Serializer):
    reason = review_text_field(
        required=False, allow_blank=True, default="", help_text="Optional; the researcher reads it in the email."
    )


class ReviewGrantFilterSerializer(serializers.Serializer):
    user = serializers.CharField(required=False, help_text="The holder's email.")
    variant = serializers.SlugField(required=False)
    status = serializers.ChoiceField(choices=GrantStatus.choices, required=False, help_text="The stored status.")


class ReviewGrantSerializer(GrantSerializer):
    user = serializers.EmailField(source="user.email")
    stored_status = serializers.ChoiceField(choices=GrantStatus.choices, source="status")
    request = serializers.CharField(source="request.reference", allow_null=True, default=None)
    granted_by = serializers.EmailField(source="granted_by.email", allow_null=True, default=None)

    class Meta(GrantSerializer.Meta):
        fields = [
            *GrantSerializer.Meta.fields,
            "user",
            "stored_status",
            "request",
            "granted_by",
            "reason",
            "blocks_new_requests",
            "activated_at",
            "ended_at",
        ]
        read_only_fields = fields
