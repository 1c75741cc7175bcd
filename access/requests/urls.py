"""The applicant's pages, mounted at the site root."""

from django.urls import path

from access.requests import views

urlpatterns = [
    path("apply/", views.apply, name="apply"),
    path("requests/", views.request_list, name="requests"),
    path("requests/<int:pk>/", views.request_detail, name="request-detail"),
    path("requests/<int:pk>/edit/", views.request_edit, name="request-edit"),
    path("requests/<int:pk>/withdraw/", views.request_withdraw, name="request-withdraw"),
]
