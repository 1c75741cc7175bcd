"""The applicant's pages (mounted at the site root)."""

from django.urls import path

from access import views_apply, views_downloads

urlpatterns = [
    path("apply/", views_apply.apply, name="apply"),
    path("requests/", views_apply.request_list, name="requests"),
    path("requests/<int:pk>/", views_apply.request_detail, name="request-detail"),
    path("requests/<int:pk>/edit/", views_apply.request_edit, name="request-edit"),
    path("requests/<int:pk>/withdraw/", views_apply.request_withdraw, name="request-withdraw"),
    path("grants/", views_apply.grant_list, name="grants"),
    path("grants/<int:pk>/license/", views_apply.grant_license, name="grant-license"),
    path("grants/<int:pk>/downloads/", views_downloads.grant_downloads, name="grant-downloads"),
    path("grants/<int:pk>/downloads/new/", views_downloads.grant_downloads_create, name="grant-downloads-create"),
]
