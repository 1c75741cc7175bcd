"""The applicant's API (API.md "Access requests" and "Grants"): apply, follow,
edit while more information is asked for, resubmit, withdraw; list grants and
accept their license.

Every view first looks the object up among the caller's own (another user's
request or grant answers 404, like a missing one), validates with a serializer,
calls one service and answers with a serializer's data.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.models import AccessRequest, Grant
from access.selectors import grants_annotate_effective_status, grants_for_user
from access.selectors_review import requests_for_applicant
from access.serializers_workflow import (
    AcceptLicenseSerializer,
    AccessRequestCreateSerializer,
    AccessRequestDetailSerializer,
    AccessRequestEditSerializer,
    AccessRequestSerializer,
    GrantSerializer,
    ResubmitSerializer,
    application_data,
    error_responses,
)
from access.services.grants import grant_accept_license
from access.services.requests import (
    access_request_edit,
    access_request_resubmit,
    access_request_submit,
    access_request_withdraw,
)

REQUESTS_TAG = "access requests"
GRANTS_TAG = "grants"


def _request_get_for_applicant(request, pk: int) -> AccessRequest:
    """The caller's own request; anyone else's is as absent as a missing one."""
    access_request = requests_for_applicant(request.user).prefetch_related("messages").filter(pk=pk).first()
    if access_request is None:
        raise Http404("You have no access request with this id. GET /api/v1/access-requests lists yours.")
    return access_request


def _grant_get_for_user(request, pk: int) -> Grant:
    """The caller's own grant, with its effective status; anyone else's answers 404."""
    grant = grants_for_user(request.user).filter(pk=pk).first()
    if grant is None:
        raise Http404("You have no grant with this id. GET /api/v1/grants lists yours.")
    return grants_annotate_effective_status([grant])[0]


def _detail(request, pk: int) -> dict:
    return AccessRequestDetailSerializer(_request_get_for_applicant(request, pk)).data


class AccessRequestListCreateApi(generics.ListAPIView):
    serializer_class = AccessRequestSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AccessRequest.objects.none()
        return requests_for_applicant(self.request.user)

    @extend_schema(tags=[REQUESTS_TAG], summary="Your access requests, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=[REQUESTS_TAG],
        summary="Apply for access",
        request=AccessRequestCreateSerializer,
        responses={201: AccessRequestDetailSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = AccessRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        access_request = access_request_submit(
            applicant=request.user,
            variants=serializer.validated_data["variants"],
            data=application_data(serializer.validated_data),
            license_version=serializer.validated_data["license_id"],
            request=request,
        )
        return Response(_detail(request, access_request.pk), status=status.HTTP_201_CREATED)


class AccessRequestDetailApi(APIView):
    @extend_schema(
        tags=[REQUESTS_TAG],
        summary="One of your requests: status, queue position, estimate, messages, history",
        responses={200: AccessRequestDetailSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        return Response(_detail(request, pk))

    @extend_schema(
        tags=[REQUESTS_TAG],
        summary="Edit the application while more information is requested",
        request=AccessRequestEditSerializer,
        responses={200: AccessRequestDetailSerializer, **error_responses(400, 404, 409)},
    )
    def patch(self, request, pk: int):
        access_request = _request_get_for_applicant(request, pk)
        serializer = AccessRequestEditSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        access_request_edit(
            access_request=access_request,
            applicant=request.user,
            data=application_data(serializer.validated_data, current=access_request),
            request=request,
        )
        return Response(_detail(request, pk))


class AccessRequestResubmitApi(APIView):
    @extend_schema(
        tags=[REQUESTS_TAG],
        summary="Send the edited request back to the reviewers",
        request=ResubmitSerializer,
        responses={200: AccessRequestDetailSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, pk: int):
        access_request = _request_get_for_applicant(request, pk)
        serializer = ResubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        access_request_resubmit(
            access_request=access_request,
            applicant=request.user,
            message=serializer.validated_data["message"],
            request=request,
        )
        return Response(_detail(request, pk))


class AccessRequestWithdrawApi(APIView):
    @extend_schema(
        tags=[REQUESTS_TAG],
        summary="Withdraw an open request",
        request=None,
        responses={200: AccessRequestDetailSerializer, **error_responses(404, 409)},
    )
    def post(self, request, pk: int):
        access_request = _request_get_for_applicant(request, pk)
        access_request_withdraw(access_request=access_request, applicant=request.user, request=request)
        return Response(_detail(request, pk))


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
        grant = _grant_get_for_user(request, pk)
        serializer = AcceptLicenseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_accept_license(
            grant=grant, user=request.user, license_version=serializer.validated_data["license_id"], request=request
        )
        return Response(GrantSerializer(_grant_get_for_user(request, pk)).data)
