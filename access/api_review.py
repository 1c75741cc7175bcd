"""The reviewers' API (API.md "Review"): the queue, a request's full file, claim,
notes, decisions, and grants managed by hand (grant without a request, revoke,
suspend, reinstate).

Only reviewers and admins get in, on an API token or an MFA-verified session
(``IsReviewer``). A reviewer never sees or acts on their own request or grant
through these endpoints: deciding one's own access is what review exists to prevent.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.models import AccessRequest, Grant, RequestedVariant, RequestMessage, ReviewDecision, ReviewNote
from access.selectors import grants_annotate_effective_status
from access.selectors_review import review_queue, review_requests_annotate_approvals
from access.serializers_workflow import (
    ClaimSerializer,
    DecisionSerializer,
    GrantCreateSerializer,
    GrantReinstateSerializer,
    GrantRevokeSerializer,
    GrantSuspendSerializer,
    NoteCreateSerializer,
    ReviewGrantFilterSerializer,
    ReviewGrantSerializer,
    ReviewNoteSerializer,
    ReviewQueueFilterSerializer,
    ReviewRequestDetailSerializer,
    ReviewRequestListSerializer,
    error_responses,
)
from access.services.grants import grant_create, grant_reinstate, grant_revoke, grant_suspend
from access.services.review import access_request_claim, access_request_decide, access_request_note_add
from portal.api.permissions import IsReviewer

REVIEW_TAG = "review"


class IsGrantManager(IsReviewer):
    """Reviewers who may also grant, suspend, reinstate and revoke access."""

    message = "Only reviewers who manage grants can do this, from an MFA-verified session or an API token."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm("access.manage_grants")


def _filters(serializer_class, query_params) -> dict:
    # `?status=&variant=` (empty values) means "no filter", as API.md writes the query.
    serializer = serializer_class(data={name: value for name, value in query_params.items() if value})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _grants_queryset():
    return Grant.objects.select_related("variant__family", "user", "request", "granted_by")


def _request_get_for_reviewer(request, pk: int, queryset=None) -> AccessRequest:
    if queryset is None:
        queryset = AccessRequest.objects.select_related("applicant")
    access_request = queryset.filter(pk=pk).first()
    if access_request is None:
        raise Http404("No access request with this id. GET /api/v1/review/requests lists the queue.")
    if access_request.applicant_id == request.user.pk:
        raise PermissionDenied("You cannot review your own request; another reviewer must decide it.")
    return access_request


def _grant_get_for_reviewer(request, pk: int) -> Grant:
    grant = _grants_queryset().filter(pk=pk).first()
    if grant is None:
        raise Http404("No grant with this id. GET /api/v1/review/grants lists them.")
    if grant.user_id == request.user.pk:
        raise PermissionDenied("You cannot manage your own access; another reviewer must.")
    return grants_annotate_effective_status([grant])[0]


def _review_detail(request, pk: int) -> dict:
    queryset = AccessRequest.objects.select_related("applicant", "assignee", "license").prefetch_related(
        Prefetch("requested_variants", queryset=RequestedVariant.objects.select_related("variant")),
        "flags",
        Prefetch("notes", queryset=ReviewNote.objects.select_related("author")),
        Prefetch("messages", queryset=RequestMessage.objects.select_related("author")),
        Prefetch("decisions", queryset=ReviewDecision.objects.select_related("reviewer").prefetch_related("variants")),
    )
    access_request = _request_get_for_reviewer(request, pk, queryset)
    review_requests_annotate_approvals([access_request])
    context = {
        "applicant_grants": grants_annotate_effective_status(_grants_queryset().filter(user=access_request.applicant)),
        "applicant_other_requests": AccessRequest.objects.filter(applicant=access_request.applicant)
        .exclude(pk=pk)
        .order_by("-submitted_at", "-id"),
    }
    return ReviewRequestDetailSerializer(access_request, context=context).data


class ReviewRequestListApi(generics.ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewRequestListSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccessRequest.objects.none()
        filters = _filters(ReviewQueueFilterSerializer, self.request.query_params)
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
        access_request = _request_get_for_reviewer(request, pk)
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
        access_request = _request_get_for_reviewer(request, pk)
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
        access_request = _request_get_for_reviewer(request, pk)
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


class ReviewGrantListCreateApi(generics.ListAPIView):
    permission_classes = [IsGrantManager]
    serializer_class = ReviewGrantSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        filters = _filters(ReviewGrantFilterSerializer, self.request.query_params)
        grants = _grants_queryset()
        if "user" in filters:
            grants = grants.filter(user__email__iexact=filters["user"])
        if "variant" in filters:
            grants = grants.filter(variant__slug=filters["variant"])
        if "status" in filters:
            grants = grants.filter(status=filters["status"])
        return grants

    def paginate_queryset(self, queryset):
        return grants_annotate_effective_status(super().paginate_queryset(queryset))

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Grants, newest first",
        parameters=[ReviewGrantFilterSerializer],
        responses={200: ReviewGrantSerializer(many=True), **error_responses(400, 403)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Grant access without a request",
        request=GrantCreateSerializer,
        responses={201: ReviewGrantSerializer, **error_responses(400, 403, 409)},
    )
    def post(self, request):
        serializer = GrantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant = grant_create(
            user=serializer.validated_data["email"],
            variant=serializer.validated_data["variant"],
            actor=request.user,
            reason=serializer.validated_data["reason"],
            expires_at=serializer.validated_data.get("expires_at"),
            request=request,
        )
        return Response(
            ReviewGrantSerializer(_grant_get_for_reviewer(request, grant.pk)).data, status=status.HTTP_201_CREATED
        )


class ReviewGrantRevokeApi(APIView):
    permission_classes = [IsGrantManager]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Revoke a grant (final), optionally blocking new requests",
        request=GrantRevokeSerializer,
        responses={200: ReviewGrantSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = _grant_get_for_reviewer(request, pk)
        serializer = GrantRevokeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_revoke(grant=grant, actor=request.user, **serializer.validated_data, request=request)
        return Response(ReviewGrantSerializer(_grant_get_for_reviewer(request, pk)).data)


class ReviewGrantSuspendApi(APIView):
    permission_classes = [IsGrantManager]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Suspend a grant",
        request=GrantSuspendSerializer,
        responses={200: ReviewGrantSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = _grant_get_for_reviewer(request, pk)
        serializer = GrantSuspendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_suspend(grant=grant, actor=request.user, reason=serializer.validated_data["reason"], request=request)
        return Response(ReviewGrantSerializer(_grant_get_for_reviewer(request, pk)).data)


class ReviewGrantReinstateApi(APIView):
    permission_classes = [IsGrantManager]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Reinstate a suspended grant",
        request=GrantReinstateSerializer,
        responses={200: ReviewGrantSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = _grant_get_for_reviewer(request, pk)
        serializer = GrantReinstateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_reinstate(grant=grant, actor=request.user, reason=serializer.validated_data["reason"], request=request)
        return Response(ReviewGrantSerializer(_grant_get_for_reviewer(request, pk)).data)
