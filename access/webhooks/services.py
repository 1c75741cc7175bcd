"""Queueing webhook messages when access events happen, delivering them with retries and
backoff, and redelivering one by hand (the admin's "Redeliver" action)."""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from access.audit.models import AuditEvent
from access.webhooks.delivery import AddressRefused, endpoint_address, webhook_post
from access.webhooks.events import EVENT_OF_ACTION, webhook_body
from access.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from access.webhooks.signing import webhook_headers

logger = logging.getLogger(__name__)

DELIVER_TASK = "access.webhook_deliver"
MAX_DELAY_SECONDS = 6 * 3600


def webhook_retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: WEBHOOK_RETRY_BASE_SECONDS
    doubled each time (30 s, 1, 2, 4 ... minutes by default), at most six hours."""
    return min(settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), MAX_DELAY_SECONDS)


def webhook_messages_record(event: AuditEvent) -> list[WebhookDelivery]:
    """One message per active endpoint subscribed to the event's type, made in the event's own
    transaction and queued once it commits (nothing is sent for a change rolled back)."""
    event_type = EVENT_OF_ACTION.get(event.action)
    if event_type is None:
        return []
    active = WebhookEndpoint.objects.filter(is_active=True)
    endpoints = [endpoint for endpoint in active if event_type in endpoint.events]
    if not endpoints:
        return []
    body = webhook_body(event, event_type)
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=endpoint, event_type=event_type, body=body, created_at=now, next_attempt_at=now)
        for endpoint in endpoints
    )
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: webhook_enqueue(ids))
    return deliveries


def webhook_enqueue(delivery_ids: list[int], *, countdown: float = 0, manual: bool = False) -> None:
    from celery import current_app

    task = current_app.tasks[DELIVER_TASK]  # by name: the tasks module imports this one
    for delivery_id in delivery_ids:
        try:
            task.apply_async((delivery_id,), {"manual": manual}, countdown=countdown, queue=settings.WEBHOOK_QUEUE)
        except Exception:  # the broker is down: the sweep (webhooks_sweep) sends it once it is back
            logger.exception("webhooks: could not queue delivery %s", delivery_id)


def attempt_time_limit() -> float:
    """Seconds one attempt may take in all (the task's hard limit): a receiver that trickles its
    answer byte by byte resets each read's timeout, and a name lookup has none of its own."""
    return 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 30


def _claim(delivery_id: int, *, manual: bool) -> WebhookDelivery | None:
    """Take a due delivery for one attempt (its next try is pushed past the attempt's longest
    run, so a duplicate task or the sweep finds it not due); None if it is not due, done, or
    gone. A manual redelivery takes it whatever its state, and leaves its schedule alone."""
    if manual:
        return WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    now = timezone.now()
    lease = now + dt.timedelta(seconds=attempt_time_limit() + 60)
    due = Q(pk=delivery_id, status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], next_attempt_at__lte=now)
    if not WebhookDelivery.objects.filter(due).update(next_attempt_at=lease):
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, str, int, bool]:
    """One POST: (status code, error, answer excerpt, milliseconds, final: retrying cannot help)."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        return None, "the endpoint is inactive", "", 0, True
    body = delivery.body.encode()
    try:
        address = endpoint_address(endpoint.url, allow_private=endpoint.allow_private_network)
        headers = webhook_headers(endpoint.secret, delivery.message_id, int(time.time()), body)
    except AddressRefused as exc:
        return None, str(exc)[:500], "", 0, True
    except (ValueError, TypeError) as exc:  # a secret that is not base64, say: the admin must fix it
        return None, f"cannot sign: {exc}"[:500], "", 0, True
    result = webhook_post(endpoint.url, body, headers, address=address, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    return result.status_code, result.error, result.excerpt, result.duration_ms, False


def webhook_attempt(delivery_id: int, *, manual: bool = False) -> WebhookDelivery | None:
    """POST the message once and record the attempt; schedule the next try after a failure
    while tries remain (WEBHOOK_MAX_ATTEMPTS), else mark it failed. A manual redelivery is one
    more try that never takes away the automatic ones, nor a delivery. None: nothing was due."""
    delivery = _claim(delivery_id, manual=manual)
    if delivery is None:
        return None
    started = timezone.now()
    try:
        status_code, error, excerpt, duration_ms, final = _post(delivery)
    except Exception as exc:  # whatever it was (the task's time limit too), it is logged, not lost
        logger.exception("webhooks: attempt at %s failed", delivery.message_id)
        status_code, error, excerpt, final = None, f"{type(exc).__name__}: {exc}"[:500], "", False
        duration_ms = int((timezone.now() - started).total_seconds() * 1000)
    ok = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=started, status_code=status_code, error=error,
            response_excerpt=excerpt[:500], duration_ms=duration_ms, manual=manual,
        )  # fmt: skip
        delivery.attempts += 1
        delivery.last_attempt_at, delivery.last_status_code, delivery.last_error = started, status_code, error
        if ok:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.DELIVERED, None
            delivery.delivered_at = delivery.delivered_at or timezone.now()
        elif delivery.status == DeliveryStatus.DELIVERED or manual:
            pass  # a failed redelivery changes neither a delivery nor the automatic schedule
        elif final or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delivery.status = DeliveryStatus.RETRYING
            delivery.next_attempt_at = timezone.now() + dt.timedelta(seconds=webhook_retry_delay(delivery.attempts))
        delivery.save(update_fields=[
            "attempts", "last_attempt_at", "last_status_code", "last_error", "status", "delivered_at",
            "next_attempt_at",
        ])  # fmt: skip
    logger.info(
        "webhooks: %s %s to %s: %s (attempt %d)", delivery.event_type, delivery.message_id, delivery.endpoint.url,
        status_code or error, delivery.attempts,
    )  # fmt: skip
    return delivery


def webhook_redeliver(delivery: WebhookDelivery) -> None:
    """Send a message again now, whatever its state (the same id and body), as one attempt."""
    webhook_enqueue([delivery.pk], manual=True)


def webhooks_sweep() -> int:
    """Queue deliveries whose next try is overdue by over five minutes (queued while the broker
    was down, or a worker died mid-attempt); the count queued."""
    overdue = timezone.now() - dt.timedelta(minutes=5)
    ids = list(
        WebhookDelivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], next_attempt_at__lte=overdue
        ).values_list("pk", flat=True)[:1000]
    )
    webhook_enqueue(ids)
    return len(ids)
