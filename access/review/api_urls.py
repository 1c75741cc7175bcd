"""The reviewers' API, mounted under /api/v1/ (grants managed by reviewers: ``access.grants.api_urls``)."""

from django.urls import path

from access.review import api

urlpatterns = [
    path("review/requests", api.ReviewRequestListApi.as_view(), name="api-review-requests"),
    path("review/requests/<int:pk>", api.ReviewRequestDetailApi.as_view(), name="api-review-request"),
    path("review/requests/<int:pk>/claim", api.ReviewRequestClaimApi.as_view(), name="api-review-request-claim"),
    path("review/requests/<int:pk>/notes", api.ReviewRequestNotesApi.as_view(), name="api-review-request-notes"),
    path(
        "review/requests/<int:pk>/decision", api.ReviewRequestDecisionApi.as_view(), name="api-review-request-decision"
    ),
]
