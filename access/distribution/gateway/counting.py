"""Counting a link's downloads and logging the request, in one transaction (on PostgreSQL in one
statement).

A request that starts a file at byte 0 uses one of the link's downloads, taken by one guarded
UPDATE (``downloads_used < max_downloads``), so concurrent first requests can never use more
than the link allows. A resume (a Range that starts later in the file) is free once the link
has been used. On a link never used it counts as a start instead of being refused: a
researcher whose links expired mid-file creates new ones and resumes the partial file with them.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from access.distribution.events import EVENT_FIELDS, db_columns, event_insert, event_request_values
from access.distribution.gateway.links import (
    GatewayLink,
    gateway_link_from_row,
    gateway_link_sql,
    pg_prepared_cursor,
)
from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.rules import ALLOWED, DownloadOutcome, exhausted
from access.grants.models import GrantStatus

logger = logging.getLogger(__name__)


def download_take(
    *,
    link: GatewayLink,
    request,
    ip: str | None,
    network: str,
    range_start: int | None,
    served: DownloadOutcome,
    bytes_sent: int | None = None,
    failure: DownloadOutcome | None = None,
) -> tuple[DownloadOutcome, bool, int]:
    """Count a request the bundle checks allowed, and log it, in one transaction.

    ``range_start`` is the first byte asked for (None: the whole file). HEAD requests never
    count; a resume counts only on a link never used before (see the module docstring).
    ``served`` is the status and outcome to log when the request goes through; ``failure`` a
    storage error already known, which refuses the request uncounted (an exhausted link is
    reported first, as it would be if storage were fine). Returns the outcome (ALLOWED or the
    refusal), whether a download was used, and the id of the logged event."""
    method = getattr(request, "method", "GET")
    needs_count = method != "HEAD" and not (range_start and link.downloads_used >= 1)
    if needs_count and failure is None and connection.vendor == "postgresql":
        # One statement, so one round trip and one commit, in place of BEGIN, UPDATE, INSERT, COMMIT.
        counted, event_id = _pg_take_and_log(link, request, ip, network, served, bytes_sent)
        return (ALLOWED if counted else exhausted(link)), counted, event_id
    with transaction.atomic():
        if needs_count and failure is not None:
            outcome = exhausted(link) if link.downloads_used >= link.max_downloads else failure
            return outcome, False, _link_event_insert(link, request, ip, network, outcome)
        counted = False
        if needs_count:
            counted = _link_take(link.id)
            if not counted:
                outcome = exhausted(link)
                return outcome, False, _link_event_insert(link, request, ip, network, outcome)
        if failure is not None:
            return failure, False, _link_event_insert(link, request, ip, network, failure)
        return ALLOWED, counted, _link_event_insert(link, request, ip, network, served, counted, bytes_sent)


@cache
def _link_take_sql() -> str:
    table = DownloadLink._meta.db_table
    l_id, l_max, l_used = db_columns(DownloadLink, "id", "max_downloads", "downloads_used")
    return f"UPDATE {table} SET {l_used} = {l_used} + 1 WHERE {l_id} = %s AND {l_used} < {l_max}"


def _link_take(link_id: int) -> bool:
    """The guarded UPDATE: concurrent first requests never use more downloads than the link allows."""
    with connection.cursor() as cursor:
        cursor.execute(_link_take_sql(), [link_id])
        return cursor.rowcount == 1


@cache
def _pg_take_and_log_sql() -> str:
    """The guarded UPDATE and the event INSERT as one statement: the event is ``served`` (counted)
    when the UPDATE took a download, else the exhausted refusal."""
    columns = ", ".join(db_columns(DownloadEvent, *EVENT_FIELDS))
    event_id, counted = db_columns(DownloadEvent, "id", "counted")
    # Placeholders: the link's id for the UPDATE, then the event's fields up to range_header,
    # then status and outcome if taken, status and outcome if not, and bytes_sent if taken.
    # Each is cast, so the statement can be prepared with its parameter types known.
    return f"""
        WITH taken AS ({_link_take_sql()} RETURNING 1 AS one)
        INSERT INTO {DownloadEvent._meta.db_table} ({columns})
        SELECT CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS bigint),
               CAST(%s AS timestamptz), CAST(%s AS inet), CAST(%s AS text), CAST(%s AS text), CAST(%s AS text),
               CASE WHEN taken.one IS NULL THEN CAST(%s AS smallint) ELSE CAST(%s AS smallint) END,
               CASE WHEN taken.one IS NULL THEN CAST(%s AS text) ELSE CAST(%s AS text) END,
               taken.one IS NOT NULL,
               CASE WHEN taken.one IS NULL THEN NULL ELSE CAST(%s AS bigint) END
          FROM (SELECT 1) AS request LEFT JOIN taken ON TRUE
        RETURNING {event_id}, {counted}"""


def _pg_take_and_log(link: GatewayLink, request, ip, network, served: DownloadOutcome, bytes_sent) -> tuple[bool, int]:
    refusal = exhausted(link)
    params = [
        link.id, link.id, link.bundle_id, link.grant_id, link.file_id, timezone.now(), ip, network,
        *event_request_values(request),
        refusal.status, served.status, refusal.name, served.name, bytes_sent,
    ]  # fmt: skip
    with pg_prepared_cursor() as cursor:
        cursor.execute(_pg_take_and_log_sql(), params)
        event_id, counted = cursor.fetchone()
    return counted, event_id


@cache
def _pg_fast_take_sql() -> str:
    l_table = DownloadLink._meta.db_table
    l_id, l_max, l_used = db_columns(DownloadLink, "id", "max_downloads", "downloads_used")
    columns = ", ".join(db_columns(DownloadEvent, *EVENT_FIELDS))
    event_id = db_columns(DownloadEvent, "id")[0]
    # Placeholders: the load's four (now, network, since, public_id); the predicate's name, now,
    # now, active; then the event's created_at, ip, network, user_agent, range, status, outcome, and
    # whether to log the file's size as the bytes sent.
    return f"""
        WITH q AS ({gateway_link_sql()}),
        taken AS (
            UPDATE {l_table} l SET {l_used} = l.{l_used} + 1 FROM q
             WHERE l.{l_id} = q.link_id AND l.{l_used} < l.{l_max}
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
    params = [
        now, network, since, public_id,
        name, now, now, GrantStatus.ACTIVE,
        timezone.now(), ip, network, *event_request_values(request), served.status, served.name, log_file_size,
    ]  # fmt: skip
    with pg_prepared_cursor() as cursor:
        cursor.execute(_pg_fast_take_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None, None
    return gateway_link_from_row(row[:-1], now), row[-1]


def download_give_back(link: GatewayLink, event_id: int, outcome: DownloadOutcome) -> None:
    """Undo a download the one-statement path took for a request the rules then refused (or that
    storage could not serve): the link gets it back and the logged request shows the refusal."""
    logger.warning("gateway: giving back download of link %s (%s)", link.id, outcome.name)
    with transaction.atomic():
        DownloadLink.objects.filter(pk=link.id, downloads_used__gt=0).update(downloads_used=F("downloads_used") - 1)
        DownloadEvent.objects.filter(pk=event_id).update(
            status_code=outcome.status, outcome=outcome.name, counted=False, bytes_sent=None
        )


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
