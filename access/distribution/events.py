"""The attribution log: one ``DownloadEvent`` row per gateway request, good or bad (who fetched
what, from where, and what they got), and the client network the leak rule counts.

Every row is written by ``event_insert`` or, on PostgreSQL's one-statement paths
(``access.distribution.gateway.counting``), by SQL that takes its values from
``event_request_values``: the user agent and Range header are cut to their columns' sizes in
one place.
"""

from __future__ import annotations

import ipaddress
from functools import cache, lru_cache

from django.db import connection
from django.utils import timezone

from access.audit.services import request_client_ip
from access.distribution.models import DownloadBundle, DownloadEvent, DownloadLink

USER_AGENT_CHARS = 512
RANGE_HEADER_CHARS = 200

EVENT_FIELDS = (
    "link", "bundle", "grant", "file", "created_at", "ip_address", "network", "user_agent", "range_header",
    "status_code", "outcome", "counted", "bytes_sent",
)  # fmt: skip


@lru_cache(maxsize=4096)  # every gateway request asks; the same few addresses ask again and again
def client_network(ip: str | None) -> str:
    """The /24 (IPv4) or /48 (IPv6) around an address: one household or office, usually."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def db_columns(model, *names: str) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


def event_request_values(request) -> tuple[str, str]:
    """The request's user agent and Range header, as the log keeps them."""
    meta = request.META
    # PostgreSQL refuses NUL in text; a header cannot carry one legitimately.
    user_agent = meta.get("HTTP_USER_AGENT", "")[:USER_AGENT_CHARS].replace("\x00", "")
    return user_agent, meta.get("HTTP_RANGE", "")[:RANGE_HEADER_CHARS].replace("\x00", "")


@cache
def _event_insert_sql() -> str:
    columns = ", ".join(db_columns(DownloadEvent, *EVENT_FIELDS))
    placeholders = ", ".join(["%s"] * len(EVENT_FIELDS))
    return f"INSERT INTO {DownloadEvent._meta.db_table} ({columns}) VALUES ({placeholders})"


def event_insert(
    *,
    request,
    ip: str | None,
    network: str,
    status_code: int,
    outcome: str,
    link_id: int | None = None,
    bundle_id: int | None = None,
    grant_id: int | None = None,
    file_id: int | None = None,
    counted: bool = False,
    bytes_sent: int | None = None,
) -> int:
    """Write one event row without building a model instance (the gateway's requests are many);
    returns its id."""
    user_agent, range_header = event_request_values(request)
    values = {
        "link": link_id,
        "bundle": bundle_id,
        "grant": grant_id,
        "file": file_id,
        "created_at": timezone.now(),
        "ip_address": ip,
        "network": network,
        "user_agent": user_agent,
        "range_header": range_header,
        "status_code": status_code,
        "outcome": outcome,
        "counted": counted,
        "bytes_sent": bytes_sent,
    }
    params = [
        DownloadEvent._meta.get_field(name).get_db_prep_save(values[name], connection) for name in EVENT_FIELDS
    ]
    returning = connection.features.can_return_columns_from_insert
    with connection.cursor() as cursor:
        returning_id = " RETURNING " + db_columns(DownloadEvent, "id")[0] if returning else ""
        cursor.execute(_event_insert_sql() + returning_id, params)
        return cursor.fetchone()[0] if returning else cursor.lastrowid


def download_event_record(
    *,
    request,
    status_code: int,
    outcome: str,
    link: DownloadLink | None = None,
    bundle: DownloadBundle | None = None,
    network: str | None = None,
) -> int:
    """Log a request for a link or bundle loaded as model instances (scripts, manifests, refusals
    before a link is loaded); returns the event's id."""
    if link is not None and bundle is None:
        bundle = link.bundle
    ip = request_client_ip(request)
    return event_insert(
        request=request,
        ip=ip,
        network=client_network(ip) if network is None else network,
        status_code=status_code,
        outcome=outcome,
        link_id=link.pk if link is not None else None,
        bundle_id=bundle.pk if bundle is not None else None,
        grant_id=bundle.grant_id if bundle is not None else None,
        file_id=link.file_id if link is not None else None,
    )


def download_event_bytes_sent(event_id: int, bytes_sent: int) -> None:
    """Correct the bytes logged for a transfer that ended short (the client went away)."""
    DownloadEvent.objects.filter(pk=event_id).update(bytes_sent=bytes_sent)


def download_event_served_by_portal(event_id: int, size: int) -> None:
    """A whole-file GET the one-statement path logged as storage would have sent it (redirected,
    accel_redirect) that the portal sends itself: a recipient's marked copy or checklist."""
    DownloadEvent.objects.filter(pk=event_id).update(outcome="served", status_code=200, bytes_sent=size)
