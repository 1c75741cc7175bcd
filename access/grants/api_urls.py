"""The grants API, mounted under /api/v1/: the holder's and the reviewers'."""

from django.urls import path

from access.grants import api

urlpatterns = [
    path("grants", api.GrantListApi.as_view(), name="api-grants"),
    path("grants/<int:pk>/accept-license", api.GrantAcceptLicenseApi.as_view(), name="api-grant-accept-license"),
    path("review/grants", api.ReviewGrantListCreateApi.as_view(), name="api-review-grants"),
    path("review/grants/<int:pk>/revoke", api.ReviewGrantRevokeApi.as_view(), name="api-review-grant-revoke"),
    path("review/grants/<int:pk>/suspend", api.ReviewGrantSuspendApi.as_view(), name="api-review-grant-suspend"),
    path("review/grants/<int:pk>/reinstate", api.ReviewGrantReinstateApi.as_view(), name="api-review-grant-reinstate"),
]
