"""The download-links API, mounted under /api/v1/."""

from django.urls import path

from access.distribution import api

urlpatterns = [
    path("grants/<int:pk>/download-links", api.GrantDownloadLinksApi.as_view(), name="api-grant-download-links"),
]
