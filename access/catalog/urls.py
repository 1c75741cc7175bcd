"""The catalog's public pages, mounted at the site root."""

from django.urls import path

from access.catalog import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("models/<slug:slug>/", views.variant_detail, name="variant-detail"),
    path("licenses/<int:license_id>/", views.license_detail, name="license-detail"),
]
