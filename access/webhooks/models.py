"""Webhook endpoints, the messages queued for them, and every delivery attempt."""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class WebhookEvent(models.TextChoices):
    REQUEST_SUBMITTED = "request.submitted", "Request submitted"
    REQUEST_DECIDED = "request.decided", "Request decided (approved or rejected)"
    REQUEST_INFO_REQUESTED = "request.info_requested", "More information requested"
    GRANT_ACTIVATED = "grant.activated", "Grant activated (license accepted, or reinstated)"
    GRANT_SUSPENDED = "grant.suspended", "Grant suspended"
    GRANT_REVOKED = "grant.revoked", "Grant revoked"
    GRANT_EXPIRED = "grant.expired", "Grant expired"
    DOWNLOADS_LEAK_SUSPENDED = "downloads.leak_suspended", "Download links suspended (leak rule)"


def webhook_secret_new() -> str:
    """A Standard Webhooks secret: "whsec_" and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _all_events() -> list[str]:
    return list(WebhookEvent.values)


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=500, help_text="Where events are POSTed (https:// in production).")
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(
        max_length=100,
        default=webhook_secret_new,
        help_text="Signs every message (Standard Webhooks: HMAC-SHA256 over id, timestamp and body). "
        "Give it to the receiver; to rotate it, replace it here and there.",
    )
    events = models.JSONField(default=_all_events, help_text="The event types sent to this endpoint.")
    is_active = models.BooleanField(default=True, help_text="Inactive endpoints get no new messages.")
    allow_private_network = models.BooleanField(
        default=False,
        help_text="Allow delivery to loopback, private and link-local addresses (an internal system). "
        "Off, such addresses are refused, so an endpoint cannot be aimed at the portal's own network.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.description or self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (retries used up)"


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookDelivery(models.Model):
    """One message to one endpoint: its body as signed and sent, and where its delivery stands.
    Retries and redeliveries send the same id and body (receivers deduplicate by webhook-id)."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True, default=_message_id, editable=False)
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    body = models.TextField(help_text="The JSON body, exactly as signed and sent.")
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a message: when, the answer's status code or the error, how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    manual = models.BooleanField(default=False, help_text="A redelivery asked for by an admin.")

    class Meta:
        ordering = ["attempted_at", "pk"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
