"""The applicant's API shapes (docs/api.md, "Access requests"): the application, a request and
its detail (queue position, estimate, messages, history).

Inputs only check shapes and turn ids and slugs into rows; the rules (use-case length, link
format, one open request per variant) stay in the services, so the web form and the API answer
alike.
"""

from __future__ import annotations

from django_countries import countries
from rest_framework import serializers

from access.catalog.models import LicenseVersion
from access.catalog.serializers import UNKNOWN_LICENSE_MESSAGE, variant_slugs_field
from access.requests.application import EDITABLE_FIELDS, ApplicationData, publications_clean, use_case_errors
from access.requests.models import AccessRequest, OrganizationType, RequestMessage, RequestStatus, VariantDecision
from access.requests.selectors import DecisionEstimate, decision_estimate, queue_position, request_history
from portal.api.fields import RowIdField
from portal.validators import name_bidi_refuse


class ApplicationSerializer(serializers.Serializer):
    """The application fields, shared by submitting and editing."""

    full_name = serializers.CharField(max_length=200, help_text="Full legal name.", validators=[name_bidi_refuse])
    affiliation = serializers.CharField(max_length=300, validators=[name_bidi_refuse])
    organization_type = serializers.ChoiceField(choices=OrganizationType.choices)
    position = serializers.CharField(max_length=200, validators=[name_bidi_refuse])
    country = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. DE.")
    use_case = serializers.CharField(help_text="What you will study and why it needs the weights.")
    publications = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=500),
        required=False,
        default=list,
        help_text="Links to publications or a profile page (http or https).",
    )

    # The services' own rules, asked here too so that every field's error comes in one answer.
    def validate_use_case(self, value: str) -> str:
        if errors := use_case_errors(value):
            raise serializers.ValidationError(errors)
        return value

    def validate_publications(self, value: list[str]) -> list[str]:
        _, errors = publications_clean(value)
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_country(self, value: str) -> str:
        code = value.strip().upper()
        if code not in countries:
            raise serializers.ValidationError("Give the ISO 3166-1 alpha-2 code of a country, e.g. DE or US.")
        return code


def application_data(values: dict, current: AccessRequest | None = None) -> ApplicationData:
    """The values given, with the request's current ones for the fields left out (PATCH)."""
    merged = {}
    for field in EDITABLE_FIELDS:
        if field in values:
            merged[field] = values[field]
        elif current is not None:
            merged[field] = current.country.code if field == "country" else getattr(current, field)
    return ApplicationData(**merged)


class AccessRequestCreateSerializer(ApplicationSerializer):
    variants = variant_slugs_field(help_text="Slugs of the models requested, of one family.")
    license_id = RowIdField(
        queryset=LicenseVersion.objects.all(),
        error_messages={"does_not_exist": UNKNOWN_LICENSE_MESSAGE},
        help_text="Id of the license version you read and agree to.",
    )


class AccessRequestEditSerializer(ApplicationSerializer):
    """PATCH: any subset of the application fields."""

    def validate(self, attrs):
        fixed = sorted({"variants", "license_id"} & set(self.initial_data))
        if fixed:
            raise serializers.ValidationError(
                {
                    name: ["This cannot be changed on a submitted request; withdraw it and apply again."]
                    for name in fixed
                }
            )
        if not attrs:
            raise serializers.ValidationError(f"Send at least one field to change: {', '.join(EDITABLE_FIELDS)}.")
        return attrs


class ResubmitSerializer(serializers.Serializer):
    message = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Optional reply to the reviewers."
    )


class VariantDecisionSerializer(serializers.Serializer):
    variant = serializers.CharField(source="variant.slug")
    decision = serializers.ChoiceField(choices=VariantDecision.choices)


class MessageSerializer(serializers.ModelSerializer):
    """A message of the thread as the applicant sees it: who wrote it by role, never by email."""

    author_role = serializers.SerializerMethodField()

    class Meta:
        model = RequestMessage
        fields = ["kind", "text", "created_at", "author_role"]

    def get_author_role(self, message) -> serializers.ChoiceField(choices=["applicant", "reviewer", "portal"]):  # type: ignore[valid-type]
        if message.author_id is None:
            return "portal"  # decided by a policy
        return "applicant" if message.author_id == message.request.applicant_id else "reviewer"


class HistoryEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    action = serializers.CharField()
    label = serializers.CharField()


class AccessRequestSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    variants = serializers.SerializerMethodField()
    variant_decisions = serializers.SerializerMethodField()
    country = serializers.CharField(source="country.code")
    license_id = serializers.IntegerField()

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "reference",
            "status",
            "variants",
            "variant_decisions",
            "created_at",
            "submitted_at",
            "decided_at",
            "full_name",
            "affiliation",
            "organization_type",
            "position",
            "country",
            "use_case",
            "publications",
            "license_id",
            "rejection_reason",
        ]
        read_only_fields = fields

    def get_variants(self, access_request) -> list[str]:
        return [rv.variant.slug for rv in access_request.requested_variants.all()]

    def get_variant_decisions(self, access_request) -> VariantDecisionSerializer(many=True):  # type: ignore[valid-type]
        return VariantDecisionSerializer(access_request.requested_variants.all(), many=True).data


class AccessRequestDetailSerializer(AccessRequestSerializer):
    queue_position = serializers.SerializerMethodField()
    estimated_decision_at = serializers.SerializerMethodField()
    estimated_days = serializers.SerializerMethodField()
    estimate_basis = serializers.SerializerMethodField()
    messages = MessageSerializer(many=True)
    history = serializers.SerializerMethodField()

    class Meta(AccessRequestSerializer.Meta):
        fields = [
            *AccessRequestSerializer.Meta.fields,
            "queue_position",
            "estimated_decision_at",
            "estimated_days",
            "estimate_basis",
            "messages",
            "history",
        ]
        read_only_fields = fields

    def get_queue_position(self, access_request) -> int | None:
        return queue_position(access_request)

    def _estimate(self, access_request) -> DecisionEstimate | None:
        # One estimate for the three fields, so they agree with each other.
        cache = self.context.setdefault("_estimates", {})
        if access_request.pk not in cache:
            cache[access_request.pk] = decision_estimate(access_request)
        return cache[access_request.pk]

    def get_estimated_decision_at(self, access_request) -> serializers.DateTimeField(allow_null=True):  # type: ignore[valid-type]
        estimate = self._estimate(access_request)
        return serializers.DateTimeField().to_representation(estimate.at) if estimate else None

    def get_estimated_days(self, access_request) -> int | None:
        """Whole days until the expected decision (at least 1); null outside the queue."""
        estimate = self._estimate(access_request)
        return estimate.days if estimate else None

    def get_estimate_basis(self, access_request) -> str | None:
        """What the estimate rests on, in a sentence, e.g. "Based on 42 decisions in the last 28 days."."""
        estimate = self._estimate(access_request)
        return estimate.basis if estimate else None

    def get_history(self, access_request) -> HistoryEntrySerializer(many=True):  # type: ignore[valid-type]
        return HistoryEntrySerializer(request_history(access_request), many=True).data
