"""The catalog's API, mounted under /api/v1/. Paths have no trailing slash, like /api/v1/models."""

from django.urls import path

from access.catalog import api

urlpatterns = [
    path("models", api.ModelListApi.as_view(), name="api-models"),
    path("models/<slug:slug>", api.ModelDetailApi.as_view(), name="api-model-detail"),
    path("licenses/<int:license_id>", api.LicenseDetailApi.as_view(), name="api-license-detail"),
]
