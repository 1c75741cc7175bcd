"""The reviewers' pages, mounted under /review/ (grant pages are ``access.grants.urls``)."""

from django.urls import path

from access.review import views

urlpatterns = [
    path("", views.review_queue_page, name="review-queue"),
    path("bulk/", views.review_bulk, name="review-bulk"),
    path("requests/<int:pk>/", views.review_detail, name="review-detail"),
    path("requests/<int:pk>/notes/", views.review_note, name="review-note"),
    path("requests/<int:pk>/claim/", views.review_claim, name="review-claim"),
    path("requests/<int:pk>/decision/", views.review_decision, name="review-decision"),
    path(
        "requests/<int:pk>/grants/<int:grant_id>/<str:action>/",
        views.review_request_grant_action,
        name="review-request-grant-action",
    ),
    path("stats/", views.review_stats, name="review-stats"),
]
