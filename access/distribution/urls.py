"""Download pages, mounted at the site root: the holder's links and the reviewers' download log.

Mounted before ``access.grants.urls``, whose ``review/grants/<pk>/<action>/`` would match these."""

from django.urls import path

from access.distribution import views

urlpatterns = [
    path("grants/<int:pk>/downloads/", views.grant_downloads, name="grant-downloads"),
    path("grants/<int:pk>/downloads/new/", views.grant_downloads_create, name="grant-downloads-create"),
    path("review/grants/<int:pk>/downloads/", views.review_grant_downloads, name="review-grant-downloads"),
    path("review/fingerprints/", views.review_fingerprints, name="review-fingerprints"),
    path(
        "review/grants/<int:pk>/downloads/bundles/<int:bundle_id>/unsuspend/",
        views.review_bundle_unsuspend,
        name="review-bundle-unsuspend",
    ),
]
