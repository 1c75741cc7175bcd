"""Celery tasks of the webhooks: one delivery attempt, and the sweep of overdue ones."""

from __future__ import annotations

from celery import shared_task

from access.webhooks import services
from access.webhooks.models import DeliveryStatus


@shared_task(name="access.webhook_deliver", acks_late=True, ignore_result=True)  # services.DELIVER_TASK
def webhook_deliver(delivery_id: int, manual: bool = False) -> None:
    delivery = services.webhook_attempt(delivery_id, manual=manual)
    if delivery is not None and delivery.status == DeliveryStatus.RETRYING:
        delay = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
        services.webhook_enqueue([delivery.pk], countdown=max(delay, 0))


@shared_task(name="access.webhooks_sweep", ignore_result=True)
def webhooks_sweep() -> int:
    return services.webhooks_sweep()
