"""The leak rule: a grant used from more than DOWNLOAD_LEAK_MAX_NETWORKS client networks within
DOWNLOAD_LEAK_WINDOW_HOURS has its download links suspended at once and the reviewers are alerted.

Networks are counted per grant, across all of its bundles (a researcher who makes new links
each time the old ones near the limit still reaches it) and across the other places a grant is
used from, such as the sandbox, which register their networks with
``grant_network_source_register``. Only a request from a network new to the grant can cross the
limit, so only those are counted, one at a time per grant (``grant_leak_serialized``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from access.distribution.bundles import bundle_suspend
from access.distribution.models import DownloadBundle, DownloadEvent
from access.distribution.tasks import notify_download_leak_suspected

# Key space of the advisory locks that serialize the leak rule per grant.
_LEAK_LOCK_CLASS = 0x4C45414B  # "LEAK"

# Other uses of a grant that come from client networks: each is called with a grant's id and the
# start of the window, and returns the networks it was used from since.
GrantNetworkSource = Callable[[int, dt.datetime], Iterable[str]]
_network_sources: list[GrantNetworkSource] = []


def grant_network_source_register(source: GrantNetworkSource) -> None:
    if source not in _network_sources:
        _network_sources.append(source)


@contextmanager
def grant_leak_serialized(grant_id: int):
    """On PostgreSQL, a transaction holding the grant's leak-rule lock: requests from networks
    new to a grant are then checked, counted and logged one at a time, so a burst of them cannot
    all pass the limit on the same count. SQLite runs one writer at a time anyway."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LEAK_LOCK_CLASS, grant_id % 2**31])
        yield


def grant_leak_check(*, grant_id: int, network: str, bundle: DownloadBundle | None = None) -> bool:
    """Suspend a grant's download links once they, or the grant's other uses, have been used from
    more than DOWNLOAD_LEAK_MAX_NETWORKS distinct networks within DOWNLOAD_LEAK_WINDOW_HOURS, and
    alert the reviewers. ``network`` is the network of a request about to be logged, so the
    request that crosses the limit is already refused. Only a network new to the grant can cross
    it, so nothing is counted for the others. Networks a reviewer cleared when lifting a
    suspension are not counted. ``bundle``: the one the request is for (suspended if it is still
    the grant's live one); otherwise the grant's live bundle. True if it suspended now."""
    if not network:
        return False
    cleared: set[str] = set()
    for networks in DownloadBundle.objects.filter(grant_id=grant_id).values_list("leak_cleared_networks", flat=True):
        cleared.update(networks or ())
    if network in cleared:
        return False
    since = timezone.now() - dt.timedelta(hours=settings.DOWNLOAD_LEAK_WINDOW_HOURS)
    recent = DownloadEvent.objects.filter(grant_id=grant_id, created_at__gte=since)
    # Known: a request from it got through this rule. Requests refused before the rule runs
    # (a wrong method or file name) make no network known.
    if recent.filter(network=network, status_code__lt=400).exists():
        return False
    limit = settings.DOWNLOAD_LEAK_MAX_NETWORKS
    networks = set(
        recent.exclude(network="").exclude(network__in=cleared).order_by().values_list("network", flat=True).distinct()[
            : limit + 1
        ]
    )
    for source in _network_sources:
        networks.update(n for n in source(grant_id, since) if n and n not in cleared)
    networks.add(network)
    if len(networks) <= limit:
        return False
    if bundle is None or bundle.retired_at is not None:
        bundle = DownloadBundle.objects.filter(grant_id=grant_id, retired_at__isnull=True).order_by("-created_at").first()
    if bundle is None or bundle.suspended_at is not None:
        return False  # no live links to suspend
    reason = (
        f"Leak rule: this grant was used from {len(networks)} networks within "
        f"{settings.DOWNLOAD_LEAK_WINDOW_HOURS:g} hours (limit {limit}): {', '.join(sorted(networks))}."
    )
    with transaction.atomic():
        suspended = bundle_suspend(bundle=bundle, reason=reason, networks=networks)
        if suspended:
            transaction.on_commit(partial(_leak_alert_enqueue, bundle.pk))
    return suspended


def bundle_leak_check(bundle: DownloadBundle, *, network: str = "") -> bool:
    """grant_leak_check for a request that came for one of ``bundle``'s links, scripts or manifest."""
    if bundle.suspended_at is not None:
        return False
    return grant_leak_check(grant_id=bundle.grant_id, network=network, bundle=bundle)


def _leak_alert_enqueue(bundle_id: int) -> None:
    notify_download_leak_suspected.delay(bundle_id)
