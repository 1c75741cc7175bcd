"""The sandbox's tables: one row per request (``SandboxJob``) and per-user quota overrides
(``SandboxQuota``).

A job is the unit of everything the sandbox promises: it is what the worker runs, what the
researcher sees in "recent jobs" and cancels, what quotas count, and what reviewers read for abuse
review. Its prompts and outputs are kept for ``SANDBOX_RECORD_RETENTION_DAYS`` and then blanked by
a beat task; counts and timings stay.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.grants.models import Grant


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # waited in the queue past SANDBOX_QUEUE_TIMEOUT_SECONDS; never ran


LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobEndpoint(models.TextChoices):
    COMPLETIONS = "completions", "/v1/completions"
    CHAT = "chat.completions", "/v1/chat/completions"


class SandboxJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sandbox_jobs")
    # The grant that allowed it, as a download is attributed to one.
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="sandbox_jobs")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="sandbox_jobs")
    endpoint = models.CharField(max_length=20, choices=JobEndpoint.choices)
    source = models.CharField(max_length=12, default="api", help_text="api or playground")
    stream = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # Sampling parameters as the worker reads them (max_tokens, temperature, top_p, n, stop, seed, logprobs).
    params = models.JSONField(default=dict)
    # Texts or token-id lists; blanked (None) after the retention period.
    prompts = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True, help_text="One text per choice, in choice order.")
    records_purged_at = models.DateTimeField(null=True, blank=True)
    # Budgeted before the run (max tokens of every choice), counted after it.
    completion_tokens_reserved = models.PositiveIntegerField(default=0)
    # Counted at admission (every choice reads its prompt), then what the worker ran.
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    finish_reasons = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker process that ran it.")
    network = models.CharField(
        max_length=64, blank=True, help_text="The client's /24 (IPv4) or /48 (IPv6); the leak rule counts it."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker touches its running jobs every second; a stale one means the worker is gone.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="sandboxjob_user_created_idx"),
            # The leak rule's question: which networks used this grant lately?
            models.Index(fields=["grant", "network", "created_at"], name="sandboxjob_grant_net_idx"),
            models.Index(fields=["status", "created_at"], name="sandboxjob_status_created_idx"),
        ]

    def __str__(self):
        return f"{self.public_id} ({self.variant_id}, {self.status})"

    @property
    def public_id(self) -> str:
        """The id OpenAI's responses carry: ``cmpl-...`` or ``chatcmpl-...``."""
        prefix = "chatcmpl" if self.endpoint == JobEndpoint.CHAT else "cmpl"
        return f"{prefix}-{self.id.hex}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


class SandboxQuota(models.Model):
    """One user's limits where they differ from the SANDBOX_* defaults; a blank field keeps the default."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_quota")
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why this user's limits differ.")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Sandbox quota of {self.user}"
