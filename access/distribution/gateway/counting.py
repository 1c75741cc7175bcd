"""Counting a link's allowance and logging the request, in one transaction (on PostgreSQL in one
statement).

A link is good for ``max_downloads`` copies of its file, counted in bytes. Every GET reserves
the bytes it asks for, the whole file or its Range, by one guarded UPDATE that never lets the
link's ``bytes_reserved`` pass ``max_downloads`` x the file's size, so no mix of Range requests,
sequential or concurrent, gets more than that. A stream that ends short gives back the bytes it
did not send (``download_bytes_give_back``), so an interrupted download resumed with
``curl -C -`` costs one download, and so does one file fetched as eight Range requests at once.
HEAD requests and unsatisfiable ranges cost nothing. ``downloads_used`` is the reservation in
whole files, rounded up. A resume on a fresh link costs only the bytes it asks for: a researcher
whose links expired mid-file creates new ones and finishes the partial file with them.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from access.distribution.events import EVENT_FIELDS, db_columns, event_insert, event_request_values
from access.distribution.gateway.links import (
    GatewayLink,
    gateway_link_from_row,
    gateway_link_sql,
    pg_prepared_cursor,
)
from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.rules import ALLOWED, DownloadOutcome, exhausted, resume_slack_bytes
from access.grants.models import GrantStatus

logger = logging.getLogger(__name__)


def download_take(
    *,
    link: GatewayLink,
    request,
    ip: str | None,
    network: str,
    reserve_bytes: int,
    served: DownloadOutcome,
    bytes_sent: int | None = None,
    failure: DownloadOutcome | None = None,
) -> tuple[DownloadOutcome, bool, int]:
    """Reserve a request's bytes against the link's allowance, and log it, in one transaction.

    ``reserve_bytes`` is how many bytes the request asks for (the file's size, or its Range's
    length). HEAD requests reserve nothing. ``served`` is the status and outcome to log when the
    request goes through; ``failure`` a storage error already known, which refuses the request
    unreserved (an exhausted link is reported first, as it would be if storage were fine).
    Returns the outcome (ALLOWED or the refusal), whether bytes were reserved, and the id of the
    logged event."""
    method = getattr(request, "method", "GET")
    needs_reserve = method != "HEAD"
    if needs_reserve and failure is None and connection.vendor == "postgresql":
        # One statement, so one round trip and one commit, in place of BEGIN, UPDATE, INSERT, COMMIT.
        counted, event_id = _pg_take_and_log(link, request, ip, network, reserve_bytes, served, bytes_sent)
        return (ALLOWED if counted else exhausted(link, reserve_bytes)), counted, event_id
    with transaction.atomic():
        if needs_reserve and failure is not None:
            fits = link.bytes_reserved + reserve_bytes <= link.max_downloads * link.file_size
            outcome = failure if fits else exhausted(link, reserve_bytes)
            return outcome, False, _link_event_insert(link, request, ip, network, outcome)
        counted = False
        if needs_reserve:
            counted = _link_take(link, reserve_bytes)
            if not counted:
                outcome = exhausted(link, reserve_bytes)
                return outcome, False, _link_event_insert(link, request, ip, network, outcome)
        if failure is not None:
            return failure, False, _link_event_insert(link, request, ip, network, failure)
        return ALLOWED, counted, _link_event_insert(link, request, ip, network, served, counted, bytes_sent)


# downloads_used from the link's new bytes_reserved ({new}: bytes_reserved plus the signed change):
# none for nothing reserved, one within the resume slack, else the bytes past the slack in whole
# files, rounded up. The one-statement path (_pg_fast_take_sql) spells the same rule with the file's
# size from its query; tests/access/distribution/gateway/test_allowance.py holds both to it.
_USED_SQL = """CASE WHEN {new} <= 0 THEN 0
                    WHEN {new} <= CAST(%(slack)s AS bigint) THEN 1
                    ELSE ({new} - CAST(%(slack)s AS bigint) + CAST(%(divisor)s AS bigint) - 1)
                         / CAST(%(divisor)s AS bigint) END"""


@cache
def _link_adjust_sql() -> str:
    """One guarded UPDATE of a link's reservation by a signed number of bytes: it never passes the
    link's allowance, nor goes below zero. Named placeholders; each is cast, so PostgreSQL can
    prepare the statement with its parameter types known."""
    table = DownloadLink._meta.db_table
    l_id, l_max, l_used, l_bytes = db_columns(DownloadLink, "id", "max_downloads", "downloads_used", "bytes_reserved")
    new = f"({l_bytes} + CAST(%(change)s AS bigint))"
    return f"""UPDATE {table}
           SET {l_bytes} = {new}, {l_used} = {_USED_SQL.format(new=new)}
         WHERE {l_id} = CAST(%(link)s AS bigint) AND {new} >= 0
           AND {new} <= {l_max} * CAST(%(size)s AS bigint) + CAST(%(slack)s AS bigint)"""


def _link_adjust_params(*, link_id: int, file_size: int, change: int) -> dict[str, int]:
    return {
        "change": change,
        "link": link_id,
        "size": file_size,
        "divisor": max(file_size, 1),
        "slack": resume_slack_bytes(file_size),
    }


def _link_take(link: GatewayLink, reserve_bytes: int) -> bool:
    """The guarded UPDATE: concurrent requests never reserve more than the link allows."""
    params = _link_adjust_params(link_id=link.id, file_size=link.file_size, change=reserve_bytes)
    with connection.cursor() as cursor:
        cursor.execute(_link_adjust_sql().replace("CAST(%(", "(%(").replace(")s AS bigint)", ")s)"), params)
        return cursor.rowcount == 1


@cache
def _pg_take_and_log_sql() -> str:
    """The guarded UPDATE and the event INSERT as one statement: the event is ``served`` (counted)
    when the UPDATE reserved the bytes, else the exhausted refusal."""
    columns = ", ".join(db_columns(DownloadEvent, *EVENT_FIELDS))
    event_id, counted = db_columns(DownloadEvent, "id", "counted")
    # Named placeholders: the UPDATE's (see _link_adjust_sql), then the event's fields, its status
    # and outcome if taken and if not, and bytes_sent if taken.
    return f"""
        WITH taken AS ({_link_adjust_sql()} RETURNING 1 AS one)
        INSERT INTO {DownloadEvent._meta.db_table} ({columns})
        SELECT CAST(%(link)s AS bigint), CAST(%(bundle)s AS bigint), CAST(%(grant)s AS bigint),
               CAST(%(file)s AS bigint), CAST(%(created_at)s AS timestamptz), CAST(%(ip)s AS inet),
               CAST(%(network)s AS text), CAST(%(user_agent)s AS text), CAST(%(range)s AS text),
               CASE WHEN taken.one IS NULL THEN CAST(%(refused_status)s AS smallint)
                    ELSE CAST(%(served_status)s AS smallint) END,
               CASE WHEN taken.one IS NULL THEN CAST(%(refused_outcome)s AS text)
                    ELSE CAST(%(served_outcome)s AS text) END,
               taken.one IS NOT NULL,
               CASE WHEN taken.one IS NULL THEN NULL ELSE CAST(%(bytes_sent)s AS bigint) END
          FROM (SELECT 1) AS request LEFT JOIN taken ON TRUE
        RETURNING {event_id}, {counted}"""


def _pg_take_and_log(
    link: GatewayLink, request, ip, network, reserve_bytes: int, served: DownloadOutcome, bytes_sent
) -> tuple[bool, int]:
    refusal = exhausted(link, reserve_bytes)
    user_agent, range_header = event_request_values(request)
    params = {
        **_link_adjust_params(link_id=link.id, file_size=link.file_size, change=reserve_bytes),
        "bundle": link.bundle_id, "grant": link.grant_id, "file": link.file_id, "created_at": timezone.now(),
        "ip": ip, "network": network, "user_agent": user_agent, "range": range_header,
        "refused_status": refusal.status, "served_status": served.status,
        "refused_outcome": refusal.name, "served_outcome": served.name, "bytes_sent": bytes_sent,
    }  # fmt: skip
    with pg_prepared_cursor() as cursor:
        cursor.execute(_pg_take_and_log_sql(), params)
        event_id, counted = cursor.fetchone()
    return counted, event_id


@cache
def _pg_fast_take_sql() -> str:
    l_table = DownloadLink._meta.db_table
    l_id, l_max, l_used, l_bytes = db_columns(DownloadLink, "id", "max_downloads", "downloads_used", "bytes_reserved")
    columns = ", ".join(db_columns(DownloadEvent, *EVENT_FIELDS))
    event_id = db_columns(DownloadEvent, "id")[0]
    # Placeholders: the load's four (now, network, since, public_id); the predicate's name, now,
    # now, active; then the event's created_at, ip, network, user_agent, range, status, outcome, and
    # whether to log the file's size as the bytes sent; then the resume slack setting. A
    # whole-file GET reserves the file's size.
    slack = "LEAST(CAST(%s AS bigint), q.file_size / 2)"
    used = f"""CASE WHEN l.{l_bytes} + q.file_size <= {slack} THEN 1
                    ELSE (l.{l_bytes} + q.file_size - {slack} + GREATEST(q.file_size, 1) - 1)
                         / GREATEST(q.file_size, 1) END"""
    return f"""
        WITH q AS ({gateway_link_sql()}),
        taken AS (
            UPDATE {l_table} l
               SET {l_bytes} = l.{l_bytes} + q.file_size, {l_used} = {used}
              FROM q
             WHERE l.{l_id} = q.link_id AND l.{l_bytes} + q.file_size <= l.{l_max} * q.file_size + {slack}
               AND q.file_name = CAST(%s AS text) AND q.network_seen
               AND q.retired_at IS NULL AND q.suspended_at IS NULL AND q.bundle_expires_at > CAST(%s AS timestamptz)
               AND (q.grant_expires_at IS NULL OR q.grant_expires_at > CAST(%s AS timestamptz))
               AND q.grant_status = CAST(%s AS text) AND (q.license_id IS NULL OR q.license_accepted)
            RETURNING l.{l_id} AS link_id
        ),
        logged AS (
            INSERT INTO {DownloadEvent._meta.db_table} ({columns})
            SELECT q.link_id, q.bundle_id, q.grant_id, q.file_id, CAST(%s AS timestamptz), CAST(%s AS inet),
                   CAST(%s AS text), CAST(%s AS text), CAST(%s AS text), CAST(%s AS smallint), CAST(%s AS text),
                   TRUE, CASE WHEN CAST(%s AS boolean) THEN q.file_size END
              FROM q JOIN taken ON taken.link_id = q.link_id
            RETURNING {event_id}
        )
        SELECT q.*, (SELECT {event_id} FROM logged) FROM q"""


def gateway_fast_path_available() -> bool:
    return connection.vendor == "postgresql"


def gateway_link_load_and_take(
    public_id: str,
    *,
    name: str,
    request,
    ip: str | None,
    network: str,
    now: dt.datetime,
    served: DownloadOutcome,
    log_file_size: bool,
) -> tuple[GatewayLink | None, int | None]:
    """PostgreSQL: gateway_link_load, and in the same statement download_take for a whole-file GET
    that is plainly allowed. Returns the link (None if unknown) and the logged event's id if the
    download was taken (None: nothing was taken or logged; decide and take the usual way)."""
    since = now - dt.timedelta(hours=settings.DOWNLOAD_LEAK_WINDOW_HOURS)
    slack = settings.DOWNLOAD_RESUME_SLACK_BYTES
    params = [
        now, network, since, public_id,
        slack, slack, slack,
        name, now, now, GrantStatus.ACTIVE,
        timezone.now(), ip, network, *event_request_values(request), served.status, served.name, log_file_size,
    ]  # fmt: skip
    with pg_prepared_cursor() as cursor:
        cursor.execute(_pg_fast_take_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None, None
    return gateway_link_from_row(row[:-1], now), row[-1]


def download_give_back(link: GatewayLink, event_id: int, outcome: DownloadOutcome, reserved_bytes: int) -> None:
    """Undo a reservation for a request the rules then refused (or that storage could not serve,
    or that failed before sending anything): the link gets its bytes back and the logged request
    shows the refusal."""
    logger.warning("gateway: giving back %s bytes of link %s (%s)", reserved_bytes, link.id, outcome.name)
    with transaction.atomic():
        download_bytes_give_back(link_id=link.id, file_size=link.file_size, unsent_bytes=reserved_bytes)
        DownloadEvent.objects.filter(pk=event_id).update(
            status_code=outcome.status, outcome=outcome.name, counted=False, bytes_sent=None
        )


def download_bytes_give_back(*, link_id: int, file_size: int, unsent_bytes: int) -> None:
    """Return bytes a request reserved but did not send to its link's allowance."""
    if unsent_bytes <= 0:
        return
    params = _link_adjust_params(link_id=link_id, file_size=file_size, change=-unsent_bytes)
    with connection.cursor() as cursor:
        cursor.execute(_link_adjust_sql(), params)


def _link_event_insert(
    link: GatewayLink | None, request, ip, network, outcome: DownloadOutcome, counted: bool = False, bytes_sent=None
) -> int:
    return event_insert(
        request=request, ip=ip, network=network, status_code=outcome.status, outcome=outcome.name,
        link_id=link.id if link else None, bundle_id=link.bundle_id if link else None,
        grant_id=link.grant_id if link else None, file_id=link.file_id if link else None,
        counted=counted, bytes_sent=bytes_sent,
    )  # fmt: skip


def gateway_event_record(
    *, request, link: GatewayLink | None, outcome: DownloadOutcome, ip: str | None, network: str
) -> int:
    """Log a gateway request refused before any counting (method, unknown link, name, bundle checks)."""
    return _link_event_insert(link, request, ip, network, outcome)
