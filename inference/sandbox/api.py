"""The sandbox jobs API: the caller's recent jobs, one job, cancelling one, and today's usage.
Another user's job answers 404, like a missing one."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.sandbox.models import SandboxJob
from inference.sandbox.selectors import sandbox_job_get_for_owner, sandbox_jobs_for_user, sandbox_usage
from inference.sandbox.serializers import SandboxJobDetailSerializer, SandboxJobSerializer, SandboxUsageSerializer
from inference.sandbox.services import sandbox_job_cancel
from portal.api.schema import error_responses

TAG = "sandbox"
_MISSING = "You have no sandbox job with this id. GET /api/v1/sandbox/jobs lists yours."


def _own_job(request, job_id) -> SandboxJob:
    job = sandbox_job_get_for_owner(request.user, job_id)
    if job is None:
        raise NotFound(_MISSING)
    return job


class SandboxJobListApi(generics.ListAPIView):
    serializer_class = SandboxJobSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SandboxJob.objects.none()
        return sandbox_jobs_for_user(self.request.user)

    @extend_schema(tags=[TAG], summary="Your sandbox jobs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class SandboxJobDetailApi(APIView):
    @extend_schema(
        tags=[TAG],
        summary=f"One of your sandbox jobs, with its prompts and outputs while they are kept "
        f"({settings.SANDBOX_RECORD_RETENTION_DAYS} days by default)",
        responses={200: SandboxJobDetailSerializer, **error_responses(404)},
    )
    def get(self, request, pk):
        return Response(SandboxJobDetailSerializer(_own_job(request, pk)).data)


class SandboxJobCancelApi(APIView):
    @extend_schema(
        tags=[TAG],
        summary="Stop a job: a queued one at once, a running one within a few decode steps",
        request=None,
        responses={200: SandboxJobSerializer, **error_responses(404)},
    )
    def post(self, request, pk):
        job = sandbox_job_cancel(job=_own_job(request, pk), actor=request.user, request=request)
        return Response(SandboxJobSerializer(job).data)


class SandboxUsageApi(APIView):
    @extend_schema(tags=[TAG], summary="Today's sandbox use against your limits", responses=SandboxUsageSerializer)
    def get(self, request):
        return Response(SandboxUsageSerializer(sandbox_usage(request.user)).data)
