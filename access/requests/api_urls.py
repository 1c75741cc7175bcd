"""The applicant's API, mounted under /api/v1/."""

from django.urls import path

from access.requests import api

urlpatterns = [
    path("access-requests", api.AccessRequestListCreateApi.as_view(), name="api-access-requests"),
    path("access-requests/<int:pk>", api.AccessRequestDetailApi.as_view(), name="api-access-request"),
    path(
        "access-requests/<int:pk>/resubmit", api.AccessRequestResubmitApi.as_view(), name="api-access-request-resubmit"
    ),
    path(
        "access-requests/<int:pk>/withdraw", api.AccessRequestWithdrawApi.as_view(), name="api-access-request-withdraw"
    ),
]
