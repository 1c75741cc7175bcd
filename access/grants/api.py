"""The grants API. The holder's: their grants with effective status, accepting the current license.
The reviewers' (``IsGrantManager``): list and filter grants, grant without a request, revoke,
suspend and reinstate. Another user's grant answers 404 to a holder, like a missing one.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.grants.models import Grant
from access.grants.selectors import (
    grant_get_for_holder,
    grant_get_for_manager,
    grants_annotate_effective_status,
    grants_for_review,
    grants_for_user,
)
from access.grants.serializers import (
    AcceptLicenseSerializer,
    GrantCreateSerializer,
    GrantReinstateSerializer,
    GrantRevokeSerializer,
    GrantSerializer,
    GrantSuspendSerializer,
    ReviewGrantFilterSerializer,
    ReviewGrantSerializer,
)
from access.grants.services import grant_accept_license, grant_create, grant_reinstate, grant_revoke, grant_suspend
from portal.api.filters import query_filters
from portal.api.permissions import IsReviewer
from portal.api.schema import error_responses

GRANTS_TAG = "grants"
# Grants managed by reviewers are listed with the reviewers' other endpoints in the API docs.
REVIEW_TAG = "review"
_HOLDER_MISSING = "You have no grant with this id. GET /api/v1/grants lists yours."
_MANAGER_MISSING = "No grant with this id. GET /api/v1/review/grants lists them."


# --- The holder's ----------------------------------------------------------------------------


class GrantListApi(generics.ListAPIView):
    serializer_class = GrantSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        return grants_for_user(self.request.user)

    def paginate_queryset(self, queryset):
        return grants_annotate_effective_status(super().paginate_queryset(queryset))

    @extend_schema(tags=[GRANTS_TAG], summary="Your grants, with the license each one waits for")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class GrantAcceptLicenseApi(APIView):
    @extend_schema(
        tags=[GRANTS_TAG],
        summary="Accept the license in force; the grant becomes active",
        request=AcceptLicenseSerializer,
        responses={200: GrantSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = grant_get_for_holder(request.user, pk, missing=_HOLDER_MISSING)
        serializer = AcceptLicenseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_accept_license(
            grant=grant, user=request.user, license_version=serializer.validated_data["license_id"], request=request
        )
        return Response(GrantSerializer(grant_get_for_holder(request.user, pk, missing=_HOLDER_MISSING)).data)


# --- The reviewers' --------------------------------------------------------------------------


class IsGrantManager(IsReviewer):
    """Reviewers who may also grant, suspend, reinstate and revoke access."""

    message = "Only reviewers who manage grants can do this, from an MFA-verified session or an API token."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request.user.has_perm("access.manage_grants")


class ReviewGrantListCreateApi(generics.ListAPIView):
    permission_classes = [IsGrantManager]
    serializer_class = ReviewGrantSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        filters = query_filters(ReviewGrantFilterSerializer, self.request.query_params)
        return grants_for_review(
            status=filters.get("status", ""), variant=filters.get("variant", ""), email=filters.get("user", "")
        )

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
            ReviewGrantSerializer(grant_get_for_manager(request.user, grant.pk, missing=_MANAGER_MISSING)).data,
            status=status.HTTP_201_CREATED,
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
        grant = grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING, acting=True)
        serializer = GrantRevokeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_revoke(grant=grant, actor=request.user, **serializer.validated_data, request=request)
        return Response(ReviewGrantSerializer(grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING)).data)


class ReviewGrantSuspendApi(APIView):
    permission_classes = [IsGrantManager]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Suspend a grant",
        request=GrantSuspendSerializer,
        responses={200: ReviewGrantSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING, acting=True)
        serializer = GrantSuspendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_suspend(grant=grant, actor=request.user, reason=serializer.validated_data["reason"], request=request)
        return Response(ReviewGrantSerializer(grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING)).data)


class ReviewGrantReinstateApi(APIView):
    permission_classes = [IsGrantManager]

    @extend_schema(
        tags=[REVIEW_TAG],
        summary="Reinstate a suspended grant",
        request=GrantReinstateSerializer,
        responses={200: ReviewGrantSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request, pk: int):
        grant = grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING, acting=True)
        serializer = GrantReinstateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_reinstate(grant=grant, actor=request.user, reason=serializer.validated_data["reason"], request=request)
        return Response(ReviewGrantSerializer(grant_get_for_manager(request.user, pk, missing=_MANAGER_MISSING)).data)
