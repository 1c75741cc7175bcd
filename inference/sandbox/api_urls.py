"""The sandbox's jobs API, mounted under /api/v1/."""

from django.urls import path

from inference.sandbox import api

urlpatterns = [
    path("sandbox/jobs", api.SandboxJobListApi.as_view(), name="api-sandbox-jobs"),
    path("sandbox/jobs/<uuid:pk>", api.SandboxJobDetailApi.as_view(), name="api-sandbox-job"),
    path("sandbox/jobs/<uuid:pk>/cancel", api.SandboxJobCancelApi.as_view(), name="api-sandbox-job-cancel"),
    path("sandbox/usage", api.SandboxUsageApi.as_view(), name="api-sandbox-usage"),
]
