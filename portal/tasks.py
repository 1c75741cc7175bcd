"""Housekeeping that runs on the Celery worker (scheduled by beat)."""

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="portal.sessions_clear_expired", ignore_result=True, soft_time_limit=120, time_limit=180)
def sessions_clear_expired() -> int:
    """Delete expired login sessions so the table does not grow without bound."""
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted

