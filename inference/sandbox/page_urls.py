"""The sandbox's pages, mounted at the site root: the playground, a job's record, the researcher's
usage, and the reviewers' view of use. After ``sandbox/<slug>/v1/`` in portal/urls.py; none of
these ends in ``v1/``, so neither takes the other's paths."""

from django.urls import path

from inference.sandbox import views

urlpatterns = [
    path("sandbox/", views.sandbox_playground, name="sandbox-playground"),
    path("sandbox/usage/", views.sandbox_usage_page, name="sandbox-usage"),
    path("sandbox/jobs/<uuid:job_id>/", views.sandbox_job_detail, name="sandbox-job"),
    path("sandbox/jobs/<uuid:job_id>/cancel/", views.sandbox_job_cancel_view, name="sandbox-job-cancel"),
    path("review/sandbox/", views.review_sandbox_usage, name="review-sandbox-usage"),
    path("review/sandbox/users/<int:user_id>/", views.review_sandbox_user, name="review-sandbox-user"),
    path("review/sandbox/users/<int:user_id>/quota/", views.review_sandbox_quota, name="review-sandbox-quota"),
    path(
        "review/sandbox/jobs/<uuid:job_id>/cancel/", views.review_sandbox_job_cancel, name="review-sandbox-job-cancel"
    ),
]
