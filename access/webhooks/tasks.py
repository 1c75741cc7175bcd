"""Celery tasks of the webhooks: one delivery attempt, and the sweep of overdue ones."""

from __future__ import annotations

from celery import shared_task

from access.webhooks import services
from access.webhooks.models import DeliveryStatus


@shared_task(
    name="access.webhook_deliver",  # services.DELIVER_TASK
    acks_late=True,
    ignore_result=True,
    # One attempt's whole run is bounded (prefork pools enforce it): the soft limit raises inside the
    # attempt, which records it as a failure; the claim outlasts the hard one, so no second send overlaps.
    soft_time_limit=services.attempt_time_limit(),
    time_limit=services.attempt_time_limit() + 15,
)
def webhook_deliver(delivery_id: int, manual: bool = False) -> None:
    delivery = services.webhook_attempt(delivery_id, manual=manual)
    if delivery is not None and not manual and delivery.status == DeliveryStatus.RETRYING:
        delay = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
        services.webhook_enqueue([delivery.pk], countdown=max(delay, 0))


@shared_task(name="access.webhooks_sweep", ignore_result=True)
def webhooks_sweep() -> int:
    return services.webhooks_sweep()
