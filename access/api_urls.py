"""The access workflow's API, mounted under /api/v1/ (API.md). Paths have no
trailing slash, like /api/v1/models."""

from django.urls import path

from access import api_downloads, api_requests, api_review

urlpatterns = [
    path("access-requests", api_requests.AccessRequestListCreateApi.as_view(), name="api-access-requests"),
    path("access-requests/<int:pk>", api_requests.AccessRequestDetailApi.as_view(), name="api-access-request"),
    path(
        "access-requests/<int:pk>/resubmit",
        api_requests.AccessRequestResubmitApi.as_view(),
        name="api-access-request-resubmit",
    ),
    path(
        "access-requests/<int:pk>/withdraw",
        api_requests.AccessRequestWithdrawApi.as_view(),
        name="api-access-request-withdraw",
    ),
    path("grants", api_requests.GrantListApi.as_view(), name="api-grants"),
    path(
        "grants/<int:pk>/accept-license",
        api_requests.GrantAcceptLicenseApi.as_view(),
        name="api-grant-accept-license",
    ),
    path(
        "grants/<int:pk>/download-links",
        api_downloads.GrantDownloadLinksApi.as_view(),
        name="api-grant-download-links",
    ),
    path("review/requests", api_review.ReviewRequestListApi.as_view(), name="api-review-requests"),
    path("review/requests/<int:pk>", api_review.ReviewRequestDetailApi.as_view(), name="api-review-request"),
    path("review/requests/<int:pk>/claim", api_review.ReviewRequestClaimApi.as_view(), name="api-review-request-claim"),
    path("review/requests/<int:pk>/notes", api_review.ReviewRequestNotesApi.as_view(), name="api-review-request-notes"),
    path(
        "review/requests/<int:pk>/decision",
        api_review.ReviewRequestDecisionApi.as_view(),
        name="api-review-request-decision",
    ),
    path("review/grants", api_review.ReviewGrantListCreateApi.as_view(), name="api-review-grants"),
    path("review/grants/<int:pk>/revoke", api_review.ReviewGrantRevokeApi.as_view(), name="api-review-grant-revoke"),
    path("review/grants/<int:pk>/suspend", api_review.ReviewGrantSuspendApi.as_view(), name="api-review-grant-suspend"),
    path(
        "review/grants/<int:pk>/reinstate",
        api_review.ReviewGrantReinstateApi.as_view(),
        name="api-review-grant-reinstate",
    ),
]
