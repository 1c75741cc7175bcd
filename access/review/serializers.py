"""The reviewers' API shapes: the queue, a request's full file, and the decision, claim and note inputs."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from access.catalog.serializers import LicenseRefSerializer, variant_slugs_field
from access.grants.serializers import GrantEndField, ReviewGrantSerializer, review_text_field, user_by_email
from access.requests.models import AccessRequest, OrganizationType, RequestStatus, ScreeningFlag, ScreeningFlagCode
from access.requests.selectors import request_history
from access.requests.serializers import (
    AccessRequestSerializer,
    HistoryEntrySerializer,
    MessageSerializer,
)
from access.review.models import DecisionKind, ReviewDecision, ReviewNote
from portal.models import User


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
        return user_by_email(value)


class NoteCreateSerializer(serializers.Serializer):
    text = review_text_field(help_text="Seen by reviewers only.")


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionKind.choices)
    reason = review_text_field(
        required=False,
        allow_blank=True,
        default="",
        help_text="Required for reject and request_info; the applicant reads it.",
    )
    variants = variant_slugs_field(
        listed_only=False, required=False, help_text="Approve: the subset to approve; default all."
    )
    expires_at = GrantEndField(
        required=False,
        allow_null=True,
        help_text="Approve: end of the grants, a date-time or a date (the grants end when that day ends), "
        f"at most {settings.GRANT_MAX_DURATION_DAYS} days ahead.",
    )

    def validate(self, attrs):
        if attrs["decision"] != DecisionKind.APPROVE:
            extra = sorted({"variants", "expires_at"} & set(attrs))
            if extra:
                raise serializers.ValidationError({name: ["Only an approval takes this."] for name in extra})
        return attrs


class FlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScreeningFlag
        fields = ["code", "reason", "review_round", "created_at"]
        read_only_fields = fields


class ReviewRequestListSerializer(AccessRequestSerializer):
    """A request in the review queue. ``approvals_needed``: how many more reviewers must
    approve before it is approved (the two-person rule); 0 once decided."""

    # approvals_needed reads ``approvals_still_needed``, set for a whole page at once by
    # selectors.review_requests_annotate_approvals: no query per row.

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
