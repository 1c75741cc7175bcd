"""Serializers of the access-workflow API (API.md: access requests, review, grants).

Inputs only check shapes and turn ids, slugs and emails into rows; the rules
(use-case length, link format, one open request per variant, who may decide)
stay in the services, so the web form and the API answer alike.
"""

from __future__ import annotations

from django.utils.dateparse import parse_date
from django_countries import countries
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from access.models import (
    AccessRequest,
    DecisionKind,
    Grant,
    GrantStatus,
    LicenseVersion,
    ModelVariant,
    OrganizationType,
    RequestMessage,
    RequestStatus,
    ReviewDecision,
    ReviewNote,
    ScreeningFlag,
    ScreeningFlagCode,
    VariantDecision,
)
from access.selectors_review import estimated_decision_at, queue_position, request_history
from access.serializers import LicenseRefSerializer
from access.services.grants import end_of_day_after
from access.services.requests import EDITABLE_FIELDS, ApplicationData
from portal.models import User

_UNKNOWN_VARIANT = "No model named “{value}”. GET /api/v1/models lists the models you can request."
_UNKNOWN_LICENSE = "No license with id {pk_value}. GET /api/v1/models/{{slug}} shows the license in force."


def _variant_slugs_field(*, listed_only: bool = True, **kwargs) -> serializers.ManyRelatedField:
    # Applicants pick among listed models; reviewers may name any requested one, even if unlisted since.
    variants = ModelVariant.objects.filter(is_listed=True) if listed_only else ModelVariant.objects.all()
    return serializers.SlugRelatedField(
        many=True,
        slug_field="slug",
        queryset=variants,
        error_messages={"does_not_exist": _UNKNOWN_VARIANT},
        **kwargs,
    )


def _user_by_email(email: str) -> User:
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise serializers.ValidationError("No account with this email address.")
    return user


# --- Errors (API.md's one error body, for the schema) --------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="snake_case, stable: branch on it.")
    message = serializers.CharField(help_text="What happened and what to do.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors only: messages per field.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_MEANINGS = {
    400: "Invalid input; `fields` lists what to fix.",
    403: "Authenticated but not allowed.",
    404: "Absent, or not visible to you.",
    409: "Conflicts with the current state (for example, already decided).",
}


def error_responses(*statuses: int) -> dict:
    """extend_schema ``responses`` entries for the error statuses an endpoint can answer."""
    return {status: OpenApiResponse(ErrorSerializer, description=_ERROR_MEANINGS[status]) for status in statuses}


# --- Applicant: inputs --------------------------------------------------------------------


class ApplicationSerializer(serializers.Serializer):
    """The application fields, shared by submitting and editing."""

    full_name = serializers.CharField(max_length=200, help_text="Full legal name.")
    affiliation = serializers.CharField(max_length=300)
    organization_type = serializers.ChoiceField(choices=OrganizationType.choices)
    position = serializers.CharField(max_length=200)
    country = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. DE.")
    use_case = serializers.CharField(help_text="What you will study and why it needs the weights.")
    publications = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=500),
        required=False,
        default=list,
        help_text="Links to publications or a profile page (http or https).",
    )

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
    variants = _variant_slugs_field(help_text="Slugs of the models requested, of one family.")
    license_id = serializers.PrimaryKeyRelatedField(
        queryset=LicenseVersion.objects.all(),
        error_messages={"does_not_exist": _UNKNOWN_LICENSE},
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


class AcceptLicenseSerializer(serializers.Serializer):
    license_id = serializers.PrimaryKeyRelatedField(
        queryset=LicenseVersion.objects.all(),
        error_messages={"does_not_exist": _UNKNOWN_LICENSE},
        help_text="Id of the license version you read and accept (the one in force).",
    )


# --- Applicant: outputs -------------------------------------------------------------------


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
    messages = MessageSerializer(many=True)
    history = serializers.SerializerMethodField()

    class Meta(AccessRequestSerializer.Meta):
        fields = [
            *AccessRequestSerializer.Meta.fields,
            "queue_position",
            "estimated_decision_at",
            "messages",
            "history",
        ]
        read_only_fields = fields

    def get_queue_position(self, access_request) -> int | None:
        return queue_position(access_request)

    def get_estimated_decision_at(self, access_request) -> serializers.DateTimeField(allow_null=True):  # type: ignore[valid-type]
        estimate = estimated_decision_at(access_request)
        return serializers.DateTimeField().to_representation(estimate) if estimate else None

    def get_history(self, access_request) -> HistoryEntrySerializer(many=True):  # type: ignore[valid-type]
        return HistoryEntrySerializer(request_history(access_request), many=True).data


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


# --- Review: inputs -----------------------------------------------------------------------


class ReviewQueueFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=RequestStatus.choices, required=False, help_text="Default: submitted and in review."
    )
    variant = serializers.SlugField(required=False)
    organization_type = serializers.ChoiceField(choices=OrganizationType.choices, required=False)
    country = serializers.CharField(required=False, max_length=2)
    flag = serializers.ChoiceField(choices=ScreeningFlagCode.choices, required=False)
    assignee = serializers.CharField(
        required=False, help_text="A reviewer's email, 'me', or 'none' for unassigned requests."
    )


class ClaimSerializer(serializers.Serializer):
    assignee = serializers.EmailField(required=False, help_text="Hand the request to this reviewer; default: you.")

    def validate_assignee(self, value: str) -> User:
        return _user_by_email(value)


class NoteCreateSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="Seen by reviewers only.")


class GrantEndField(serializers.DateTimeField):
    """When grants end: an ISO 8601 date-time, or a bare date (``2027-03-31``), which ends when
    that day ends in the site's time zone, as "Access ends on" does on the review pages."""

    def to_internal_value(self, value):
        try:
            day = parse_date(value.strip()) if isinstance(value, str) else None  # None: not date-shaped
        except ValueError:  # date-shaped, but no such day
            raise serializers.ValidationError("Use a date (YYYY-MM-DD) or an ISO 8601 date-time.") from None
        return end_of_day_after(day) if day else super().to_internal_value(value)


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionKind.choices)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Required for reject and request_info; the applicant reads it.",
    )
    variants = _variant_slugs_field(
        listed_only=False, required=False, help_text="Approve: the subset to approve; default all."
    )
    expires_at = GrantEndField(
        required=False,
        allow_null=True,
        help_text="Approve: end of the grants, a date-time or a date (the grants end when it ends).",
    )

    def validate(self, attrs):
        if attrs["decision"] != DecisionKind.APPROVE:
            extra = sorted({"variants", "expires_at"} & set(attrs))
            if extra:
                raise serializers.ValidationError({name: ["Only an approval takes this."] for name in extra})
        return attrs


class GrantCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text="The researcher's account email.")
    variant = serializers.SlugRelatedField(
        slug_field="slug", queryset=ModelVariant.objects.all(), error_messages={"does_not_exist": _UNKNOWN_VARIANT}
    )
    reason = serializers.CharField(help_text="Why access is granted without a request.")
    expires_at = GrantEndField(
        required=False, allow_null=True, help_text="End of the grant, a date-time or a date (it ends when it ends)."
    )

    def validate_email(self, value: str) -> User:
        return _user_by_email(value)


class GrantRevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="The researcher reads it.")
    block_new_requests = serializers.BooleanField(required=False, default=False)


class GrantSuspendSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="The researcher reads it.")


class GrantReinstateSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ReviewGrantFilterSerializer(serializers.Serializer):
    user = serializers.CharField(required=False, help_text="The holder's email.")
    variant = serializers.SlugField(required=False)
    status = serializers.ChoiceField(choices=GrantStatus.choices, required=False, help_text="The stored status.")


# --- Review: outputs ----------------------------------------------------------------------


class FlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScreeningFlag
        fields = ["code", "reason", "review_round", "created_at"]
        read_only_fields = fields


class ReviewRequestListSerializer(AccessRequestSerializer):
    """A request in the review queue. ``approvals_needed``: how many more reviewers must
    approve before it is approved (the two-person rule); 0 once decided."""

    # approvals_needed reads ``approvals_still_needed``, set for a whole page at once by
    # selectors_review.review_requests_annotate_approvals: no query per row.

    applicant = serializers.EmailField(source="applicant.email")
    assignee = serializers.EmailField(source="assignee.email", allow_null=True, default=None)
    flags = FlagSerializer(many=True)
    approvals_needed = serializers.SerializerMethodField()

    class Meta(AccessRequestSerializer.Meta):
        fields = [
            "id",
            "reference",
            "status",
            "variants",
            "variant_decisions",
            "applicant",
            "full_name",
            "affiliation",
            "organization_type",
            "country",
            "assignee",
            "flags",
            "approvals_needed",
            "review_round",
            "created_at",
            "submitted_at",
            "decided_at",
        ]
        read_only_fields = fields

    def get_approvals_needed(self, access_request) -> int:
        return access_request.approvals_still_needed


class ReviewNoteSerializer(serializers.ModelSerializer):
    author = serializers.EmailField(source="author.email")

    class Meta:
        model = ReviewNote
        fields = ["id", "author", "text", "created_at"]
        read_only_fields = fields


class ReviewMessageSerializer(MessageSerializer):
    author = serializers.EmailField(source="author.email", allow_null=True, default=None)

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "author"]


class ReviewDecisionSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=DecisionKind.choices)
    reviewer = serializers.EmailField(source="reviewer.email", allow_null=True, default=None)
    variants = serializers.SlugRelatedField(many=True, slug_field="slug", read_only=True)

    class Meta:
        model = ReviewDecision
        fields = ["kind", "reviewer", "policy_rule", "variants", "reason", "review_round", "created_at"]
        read_only_fields = fields


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


class OtherRequestSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=RequestStatus.choices)

    class Meta:
        model = AccessRequest
        fields = ["id", "reference", "status", "submitted_at"]
        read_only_fields = fields


class ReviewRequestDetailSerializer(ReviewRequestListSerializer):
    """Everything a reviewer decides on: the full application, screening flags,
    reviewer-only notes, the message thread, decisions, history, and the applicant's
    grants and other requests."""

    # Context: ``applicant_grants`` (with their effective status) and ``applicant_other_requests``.

    license = LicenseRefSerializer()
    notes = ReviewNoteSerializer(many=True)
    messages = ReviewMessageSerializer(many=True)
    decisions = ReviewDecisionSerializer(many=True)
    history = serializers.SerializerMethodField()
    applicant_grants = serializers.SerializerMethodField()
    applicant_other_requests = serializers.SerializerMethodField()

    class Meta(ReviewRequestListSerializer.Meta):
        fields = [
            *ReviewRequestListSerializer.Meta.fields,
            "position",
            "use_case",
            "publications",
            "license",
            "rejection_reason",
            "grant_expires_at",
            "notes",
            "messages",
            "decisions",
            "history",
            "applicant_grants",
            "applicant_other_requests",
        ]
        read_only_fields = fields

    def get_history(self, access_request) -> HistoryEntrySerializer(many=True):  # type: ignore[valid-type]
        return HistoryEntrySerializer(request_history(access_request), many=True).data

    def get_applicant_grants(self, access_request) -> ReviewGrantSerializer(many=True):  # type: ignore[valid-type]
        return ReviewGrantSerializer(self.context["applicant_grants"], many=True).data

    def get_applicant_other_requests(self, access_request) -> OtherRequestSerializer(many=True):  # type: ignore[valid-type]
        return OtherRequestSerializer(self.context["applicant_other_requests"], many=True).data
