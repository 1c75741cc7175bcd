"""The leak rule: a bundle used from more than DOWNLOAD_LEAK_MAX_NETWORKS client networks within
DOWNLOAD_LEAK_WINDOW_HOURS is suspended at once and the reviewers are alerted. Only a request
from a network new to the bundle can cross the limit, so only those are counted, one at a time
per bundle (``bundle_leak_serialized``).
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from access.distribution.bundles import bundle_suspend
from access.distribution.models import DownloadBundle, DownloadEvent
from access.distribution.tasks import notify_download_leak_suspected

# Key space of the advisory locks that serialize the leak rule per bundle.
_LEAK_LOCK_CLASS = 0x4C45414B  # "LEAK"


@contextmanager
def bundle_leak_serialized(bundle_id: int):
    """On PostgreSQL, a transaction holding the bundle's leak-rule lock: requests from networks
    new to a bundle are then checked, counted and logged one at a time, so a burst of them cannot
    all pass the limit on the same count. SQLite runs one writer at a time anyway."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LEAK_LOCK_CLASS, bundle_id % 2**31])
        yield


def bundle_leak_check(bundle: DownloadBundle, *, network: str = "") -> bool:
    """Suspend a bundle used from more than DOWNLOAD_LEAK_MAX_NETWORKS distinct networks within
    DOWNLOAD_LEAK_WINDOW_HOURS, and alert the reviewers. ``network`` is the network of a request
    about to be logged, so the request that crosses the limit is already refused. Only a network
    new to the bundle can cross it, so nothing is counted for the others. Networks a reviewer
    cleared when lifting a suspension are not counted. True if it suspended now."""
    if bundle.suspended_at is not None or not network:
        return False
    cleared = DownloadBundle.objects.filter(pk=bundle.pk).values_list("leak_cleared_networks", flat=True).first()
    cleared = set(cleared or ())
    if network in cleared:
        return False
    since = timezone.now() - dt.timedelta(hours=settings.DOWNLOAD_LEAK_WINDOW_HOURS)
    recent = DownloadEvent.objects.filter(bundle=bundle, created_at__gte=since)
    # Known: a request from it got through this rule. Requests refused before the rule runs
    # (a wrong method or file name) make no network known.
    if recent.filter(network=network, status_code__lt=400).exists():
        return False
    networks = set(
        recent.exclude(network="")
        .exclude(network__in=cleared)
        .order_by()
        .values_list("network", flat=True)
        .distinct()[: settings.DOWNLOAD_LEAK_MAX_NETWORKS + 1]
    )
    networks.add(network)
    if len(networks) <= settings.DOWNLOAD_LEAK_MAX_NETWORKS:
        return False
    reason = (
        f"Leak rule: links used from {len(networks)} networks within {settings.DOWNLOAD_LEAK_WINDOW_HOURS:g} hours "
        f"(limit {settings.DOWNLOAD_LEAK_MAX_NETWORKS}): {', '.join(sorted(networks))}."
    )
    with transaction.atomic():
        suspended = bundle_suspend(bundle=bundle, reason=reason, networks=networks)
        if suspended:
            transaction.on_commit(partial(_leak_alert_enqueue, bundle.pk))
    return suspended


def _leak_alert_enqueue(bundle_id: int) -> None:
    notify_download_leak_suspected.delay(bundle_id)
