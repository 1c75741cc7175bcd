"""The applicant's API (docs/api.md, "Access requests"): apply, follow, edit while more
information is asked for, resubmit, withdraw.

Every view first looks the request up among the caller's own (another user's answers 404, like
a missing one), validates with a serializer, calls one service and answers with a serializer's
data.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.requests.models import AccessRequest
from access.requests.selectors import access_request_get_for_applicant, requests_for_applicant
from access.requests.serializers import (
    AccessRequestCreateSerializer,
    AccessRequestDetailSerializer,
    AccessRequestEditSerializer,
    AccessRequestSerializer,
    ResubmitSerializer,
    application_data,
)
from access.requests.services import (
    access_request_edit,
    access_request_resubmit,
    access_request_submit,
    access_request_withdraw,
)
from portal.api.schema import error_responses

REQUESTS_TAG = "access requests"
_MISSING = "You have no access request with this id. GET /api/v1/access-requests lists yours."


def _detail(request, pk: int) -> dict:
    return AccessRequestDetailSerializer(access_request_get_for_applicant(request.user, pk, missing=_MISSING)).data


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
        access_request = access_request_get_for_applicant(request.user, pk, missing=_MISSING)
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
        access_request = access_request_get_for_applicant(request.user, pk, missing=_MISSING)
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
        access_request = access_request_get_for_applicant(request.user, pk, missing=_MISSING)
        access_request_withdraw(access_request=access_request, applicant=request.user, request=request)
        return Response(_detail(request, pk))
