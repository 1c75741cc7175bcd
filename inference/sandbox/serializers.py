"""The sandbox jobs API's shapes: a job (its records while they are kept) and today's usage."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inference.sandbox.models import JobEndpoint, JobStatus, SandboxJob


class SandboxJobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class SandboxJobSerializer(serializers.ModelSerializer):
    """One sandbox request. ``openai_id`` is the ``id`` its /v1/ response carried."""

    model = serializers.CharField(source="variant.slug")
    openai_id = serializers.CharField(source="public_id")
    endpoint = serializers.ChoiceField(choices=JobEndpoint.choices)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    total_tokens = serializers.IntegerField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = SandboxJob
        fields = [
            "id", "openai_id", "model", "grant", "endpoint", "source", "stream", "status", "params",
            "prompt_tokens", "completion_tokens", "total_tokens", "finish_reasons", "error",
            "created_at", "started_at", "first_token_at", "finished_at", "cancel_requested_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(SandboxJobErrorSerializer(allow_null=True))
    def get_error(self, job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}


class SandboxJobDetailSerializer(SandboxJobSerializer):
    """A job with its prompts and outputs, which are deleted after ``records_kept_until``."""

    records_kept_until = serializers.SerializerMethodField()

    class Meta(SandboxJobSerializer.Meta):
        fields = [*SandboxJobSerializer.Meta.fields, "prompts", "outputs", "records_purged_at", "records_kept_until"]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_records_kept_until(self, job) -> str | None:
        if job.records_purged_at:
            return None
        return (job.created_at + dt.timedelta(days=settings.SANDBOX_RECORD_RETENTION_DAYS)).isoformat()


class SandboxLimitsSerializer(serializers.Serializer):
    concurrent_requests = serializers.IntegerField()
    requests_per_minute = serializers.IntegerField()
    tokens_per_day = serializers.IntegerField()
    overridden = serializers.BooleanField(help_text="A reviewer set limits of your own.")


class SandboxUsageSerializer(serializers.Serializer):
    """Today's use (UTC) against the caller's limits. Tokens today count ended jobs' prompt and
    completion tokens plus the reserved budget (max_tokens x choices) of running ones."""

    limits = SandboxLimitsSerializer()
    live_requests = serializers.IntegerField()
    requests_last_minute = serializers.IntegerField()
    requests_left_this_minute = serializers.IntegerField(source="requests_left")
    tokens_today = serializers.IntegerField()
    tokens_left_today = serializers.IntegerField(source="tokens_left")
    jobs_today = serializers.IntegerField()
    resets_at = serializers.DateTimeField(source="day_ends_at")
