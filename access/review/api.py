"""The reviewers' API (docs/api.md, "Review"): the queue, a request's full file, claim, notes
and decisions. Grants managed by reviewers are ``access.grants.api``.

Only reviewers and admins get in, on an API token or an MFA-verified session
(``IsReviewer``). A reviewer never sees or acts on their own request through these endpoints:
deciding one's own access is what review exists to prevent.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.grants.selectors import grants_annotate_effective_status, grants_for_review
from access.requests.models import AccessRequest
from access.requests.selectors import requests_for_applicant
from access.review.selectors import (
    access_request_get_for_reviewer,
    review_queue,
    review_request_file,
    review_requests_annotate_approvals,
)
from access.review.serializers import (
    ClaimSerializer,
    DecisionSerializer,
    NoteCreateSerializer,
    ReviewNoteSerializer,
    ReviewQueueFilterSerializer,
    ReviewRequestDetailSerializer,
    ReviewRequestListSerializer,
)
from access.review.services import access_request_claim, access_request_decide, access_request_note_add
from portal.api.filters import query_filters
from portal.api.permissions import IsReviewer
from portal.api.schema import error_responses

REVIEW_TAG = "review"
_MISSING = "No access request with this id. GET /api/v1/review/requests lists the queue."


def _review_detail(request, pk: int) -> dict:
    access_request = review_request_file(request.user, pk, missing=_MISSING)
    context = {
        "applicant_grants": grants_annotate_effective_status(grants_for_review().filter(user=access_request.applicant)),
        "applicant_other_requests": requests_for_applicant(access_request.applicant).exclude(pk=pk),
    }
    return ReviewRequestDetailSerializer(access_request, context=context).data


class ReviewRequestListApi(generics.ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewRequestListSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccessRequest.objects.none()
        filters = query_filters(ReviewQueueFilterSerializer, self.request.query_params)
        return review_queue(**filters, reviewer=self.request.user).exclude(applicant=self.request.user)

    def paginate_queryset(self, queryset):
        return review_requests_annotate_approvals(super().paginate_queryset(queryset))

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="The review queue, oldest first, with screening flags and approvals still needed",
        parameters=[ReviewQueueFilterSerializer],
        responses={200: ReviewRequestListSerializer(many=True), **error_responses(400, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ReviewRequestDetailApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="A request's full file: application, flags, notes, messages, decisions, history",
        responses={200: ReviewRequestDetailSerializer, **error_responses(403, 404)},
    )
    def get(self, request, pk: int):
        return Response(_review_detail(request, pk))


class ReviewRequestClaimApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Take the request, or hand it to another reviewer",
        request=ClaimSerializer,
        responses={200: ReviewRequestDetailSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        access_request = access_request_get_for_reviewer(request.user, pk, missing=_MISSING)
        serializer = ClaimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        access_request_claim(
            access_request=access_request,
            reviewer=request.user,
            assignee=serializer.validated_data.get("assignee"),
            request=request,
        )
        return Response(_review_detail(request, pk))


class ReviewRequestNotesApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Add a note that only reviewers see",
        request=NoteCreateSerializer,
        responses={201: ReviewNoteSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request, pk: int):
        access_request = access_request_get_for_reviewer(request.user, pk, missing=_MISSING)
        serializer = NoteCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        note = access_request_note_add(
            access_request=access_request, author=request.user, text=serializer.validated_data["text"], request=request
        )
        return Response(ReviewNoteSerializer(note).data, status=status.HTTP_201_CREATED)


class ReviewRequestDecisionApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Approve (all or some models), reject, or ask for more information",
        request=DecisionSerializer,
        responses={200: ReviewRequestDetailSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        access_request = access_request_get_for_reviewer(request.user, pk, missing=_MISSING)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        access_request_decide(
            access_request=access_request,
            reviewer=request.user,
            decision=serializer.validated_data["decision"],
            reason=serializer.validated_data["reason"],
            variants=serializer.validated_data.get("variants"),
            expires_at=serializer.validated_data.get("expires_at"),
            request=request,
        )
        return Response(_review_detail(request, pk))
