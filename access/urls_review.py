"""The reviewers' pages, mounted under /review/ (see portal/urls.py)."""

from django.urls import path

from access import views_review, views_review_downloads

urlpatterns = [
    path("", views_review.review_queue_page, name="review-queue"),
    path("bulk/", views_review.review_bulk, name="review-bulk"),
    path("requests/<int:pk>/", views_review.review_detail, name="review-detail"),
    path("requests/<int:pk>/notes/", views_review.review_note, name="review-note"),
    path("requests/<int:pk>/claim/", views_review.review_claim, name="review-claim"),
    path("requests/<int:pk>/decision/", views_review.review_decision, name="review-decision"),
    path("grants/", views_review.review_grants, name="review-grants"),
    path("grants/<int:pk>/downloads/", views_review_downloads.review_grant_downloads, name="review-grant-downloads"),
    path(
        "grants/<int:pk>/downloads/bundles/<int:bundle_id>/unsuspend/",
        views_review_downloads.review_bundle_unsuspend,
        name="review-bundle-unsuspend",
    ),
    path("grants/<int:pk>/<str:action>/", views_review.review_grant_action, name="review-grant-action"),
    path("stats/", views_review.review_stats, name="review-stats"),
]
