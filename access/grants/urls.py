"""Grant pages, mounted at the site root: the holder's (``grants/``) and the reviewers' (``review/grants/``)."""

from django.urls import path

from access.grants import views

urlpatterns = [
    path("grants/", views.grant_list, name="grants"),
    path("grants/<int:pk>/license/", views.grant_license, name="grant-license"),
    path("review/grants/", views.review_grants, name="review-grants"),
    path("review/grants/<int:pk>/<str:action>/", views.review_grant_action, name="review-grant-action"),
]
