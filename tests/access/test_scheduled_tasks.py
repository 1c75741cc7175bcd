"""The workflow's Celery beat schedule: the grants' hourly expiry and daily reminders and the
reviewers' daily digest, each registered with a time limit. The jobs themselves are tested in
tests/access/grants/test_tasks.py and tests/access/review/test_digest.py."""

from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings as django_settings

from portal.celery import app


def test_beat_runs_expiry_hourly_reminders_daily_and_the_digest_at_the_configured_hour():
    schedule = django_settings.CELERY_BEAT_SCHEDULE

    entries = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    assert entries["access.grants_expire_due"] == crontab(minute=5)
    assert entries["access.grants_remind_expiring"] == crontab(hour=7, minute=0)
    assert entries["access.reviewer_digest_send"] == crontab(hour=django_settings.REVIEWER_DIGEST_HOUR_UTC, minute=0)


def test_every_scheduled_task_is_registered_with_a_time_limit():
    app.loader.import_default_modules()
    for entry in django_settings.CELERY_BEAT_SCHEDULE.values():
        if not entry["task"].startswith("access."):
            continue
        task = app.tasks[entry["task"]]
        assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit
