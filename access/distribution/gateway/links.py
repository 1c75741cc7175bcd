"""Loading a download link for the gateway: one hand-written SELECT returns the link with
everything its request is decided on (file, bundle, grant, license, whether its network is
known to the leak rule), and the bundle rules of ``access.distribution.rules`` decide on it.

The ORM's select_related of four wide rows (the model card included) and its separate license,
leak and log queries, each committed on its own, cost ten times the request itself.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access.catalog.models import LicenseVersion, ModelVariant
from access.distribution import leak
from access.distribution.events import db_columns
from access.distribution.models import DownloadBundle, DownloadEvent, DownloadLink, WeightCopy, WeightFile
from access.distribution.rules import UNKNOWN, DownloadOutcome, bundle_outcome
from access.grants.models import Grant, LicenseAcceptance
from access.grants.selectors import grant_status_effective


@dataclass(frozen=True)
class GatewayLink:
    """What the gateway needs to decide and log one link request, as of ``now``."""

    id: int
    max_downloads: int
    downloads_used: int
    bytes_reserved: int
    file_id: int
    file_name: str
    file_size: int
    file_sha256: str
    file_storage_key: str
    bundle_id: int
    bundle_expires_at: dt.datetime
    bundle_retired_at: dt.datetime | None
    bundle_suspended_at: dt.datetime | None
    grant_id: int
    grant_status: str
    grant_expires_at: dt.datetime | None
    grant_user_id: int
    variant_name: str
    copy_id: int | None  # the grant's marked copy this link sends; None: the file as published
    copy_key_id: str | None
    copy_crcs: dict | None  # the copy's CRCs, once computed (None when they are of an older file version)
    copy_current: bool  # the copy was made from the file as published now
    license_id: int | None  # the family's license in force at ``now``
    license_accepted: bool  # by the grant's holder
    network_seen: bool  # a request from this network, for this grant, got through the leak rule within its window
    now: dt.datetime  # the moment all of the above was read for

    @property
    def etag(self) -> str:
        """The bytes' identity for If-Range: the published file's, and for a marked copy the copy's
        (not its sha256, which may not be computed yet when a download starts)."""
        if self.copy_id is None:
            return f'"{self.file_sha256}"'
        return f'"{self.file_sha256}.{self.copy_id}"'

    @property
    def effective_status(self) -> str:
        return grant_status_effective(
            status=self.grant_status,
            expires_at=self.grant_expires_at,
            needs_license=self.license_id is not None and not self.license_accepted,
            now=self.now,
        )


@cache
def gateway_link_sql() -> str:
    link, weight_file, bundle, grant = (m._meta.db_table for m in (DownloadLink, WeightFile, DownloadBundle, Grant))
    variant, license_version = ModelVariant._meta.db_table, LicenseVersion._meta.db_table
    acceptance, event = LicenseAcceptance._meta.db_table, DownloadEvent._meta.db_table
    l_id, l_max, l_used, l_bytes, l_bundle, l_file, l_public, l_copy = db_columns(
        DownloadLink, "id", "max_downloads", "downloads_used", "bytes_reserved", "bundle", "file", "public_id", "copy"
    )
    copy_table = WeightCopy._meta.db_table
    c_id, c_key, c_crcs, c_sha = db_columns(WeightCopy, "id", "key_id", "crcs", "file_sha256")
    f_id, f_name, f_size, f_sha, f_key = db_columns(WeightFile, "id", "name", "size", "sha256", "storage_key")
    b_id, b_expires, b_retired, b_suspended, b_grant = db_columns(
        DownloadBundle, "id", "expires_at", "retired_at", "suspended_at", "grant"
    )
    g_id, g_status, g_expires, g_user, g_variant = db_columns(Grant, "id", "status", "expires_at", "user", "variant")
    v_id, v_name, v_family = db_columns(ModelVariant, "id", "name", "family")
    lv_id, lv_family, lv_effective = db_columns(LicenseVersion, "id", "family", "effective_at")
    a_user, a_license = db_columns(LicenseAcceptance, "user", "license")
    e_grant, e_created, e_network, e_status = db_columns(DownloadEvent, "grant", "created_at", "network", "status_code")
    # Placeholders in order: now, network, since, public_id. The license subquery orders as
    # license_current. Whether a request from this network already got through the leak rule for
    # this grant within its window is one index probe; only a new network can cross the leak
    # limit, and for those rare requests grant_leak_check counts the networks.
    inner = f"""
        SELECT l.{l_id} AS link_id, l.{l_max} AS max_downloads, l.{l_used} AS downloads_used,
               l.{l_bytes} AS bytes_reserved,
               f.{f_id} AS file_id, f.{f_name} AS file_name, f.{f_size} AS file_size, f.{f_sha} AS file_sha256,
               f.{f_key} AS storage_key, b.{b_id} AS bundle_id, b.{b_expires} AS bundle_expires_at,
               b.{b_retired} AS retired_at, b.{b_suspended} AS suspended_at, g.{g_id} AS grant_id,
               g.{g_status} AS grant_status, g.{g_expires} AS grant_expires_at, g.{g_user} AS user_id,
               v.{v_name} AS variant_name, c.{c_id} AS copy_id, c.{c_key} AS copy_key_id,
               CASE WHEN c.{c_sha} = f.{f_sha} THEN c.{c_crcs} END AS copy_crcs,
               c.{c_sha} = f.{f_sha} AS copy_current,
               (SELECT lv.{lv_id} FROM {license_version} lv
                 WHERE lv.{lv_family} = v.{v_family} AND lv.{lv_effective} <= %s
                 ORDER BY lv.{lv_effective} DESC, lv.{lv_id} DESC LIMIT 1) AS license_id,
               EXISTS (SELECT 1 FROM {event} e
                        WHERE e.{e_grant} = g.{g_id} AND e.{e_network} = %s AND e.{e_created} >= %s
                          AND e.{e_status} < 400)
                 AS network_seen
          FROM {link} l
          JOIN {weight_file} f ON f.{f_id} = l.{l_file}
          JOIN {bundle} b ON b.{b_id} = l.{l_bundle}
          JOIN {grant} g ON g.{g_id} = b.{b_grant}
          JOIN {variant} v ON v.{v_id} = g.{g_variant}
          LEFT JOIN {copy_table} c ON c.{c_id} = l.{l_copy}
         WHERE l.{l_public} = %s"""
    return f"""
        SELECT q.*, EXISTS (SELECT 1 FROM {acceptance} a
                             WHERE a.{a_user} = q.user_id AND a.{a_license} = q.license_id) AS license_accepted
          FROM ({inner}) q"""


def _aware(value):
    """A datetime read by raw SQL: SQLite gives naive UTC (or text), PostgreSQL aware values."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)


def gateway_link_load(public_id: str, *, network: str, now: dt.datetime) -> GatewayLink | None:
    """The link with everything its request is decided on, in one query; None if unknown."""
    adapt = connection.ops.adapt_datetimefield_value
    since = adapt(now - dt.timedelta(hours=settings.DOWNLOAD_LEAK_WINDOW_HOURS))
    params = [adapt(now), network, since, public_id]
    with pg_prepared_cursor() if connection.vendor == "postgresql" else connection.cursor() as cursor:
        cursor.execute(gateway_link_sql(), params)
        row = cursor.fetchone()
    return None if row is None else gateway_link_from_row(row, now)


def gateway_link_from_row(row, now: dt.datetime) -> GatewayLink:
    (link_id, max_downloads, used, bytes_reserved, file_id, file_name, file_size, file_sha256, storage_key, bundle_id,
     bundle_expires_at, retired_at, suspended_at, grant_id, grant_status, grant_expires_at, user_id,
     variant_name, copy_id, copy_key_id, copy_crcs, copy_current, license_id, network_seen,
     license_accepted) = row  # fmt: skip
    if isinstance(copy_crcs, str):  # SQLite gives JSON as text
        copy_crcs = json.loads(copy_crcs)
    return GatewayLink(
        id=link_id,
        max_downloads=max_downloads,
        downloads_used=used,
        bytes_reserved=bytes_reserved,
        file_id=file_id,
        file_name=file_name,
        file_size=file_size,
        file_sha256=file_sha256,
        file_storage_key=storage_key,
        bundle_id=bundle_id,
        bundle_expires_at=_aware(bundle_expires_at),
        bundle_retired_at=_aware(retired_at),
        bundle_suspended_at=_aware(suspended_at),
        grant_id=grant_id,
        grant_status=grant_status,
        grant_expires_at=_aware(grant_expires_at),
        grant_user_id=user_id,
        variant_name=variant_name,
        copy_id=copy_id,
        copy_key_id=copy_key_id,
        copy_crcs=copy_crcs,
        copy_current=bool(copy_current),
        license_id=license_id,
        license_accepted=bool(license_accepted),
        network_seen=bool(network_seen),
        now=now,
    )


@contextmanager
def pg_prepared_cursor():
    """A cursor whose statements PostgreSQL prepares at their first run on a connection.

    Django binds parameters on the client, so PostgreSQL parses and plans every query afresh: for
    the gateway's SELECT that costs more than running it. This cursor binds on the server and
    psycopg prepares each statement once per connection (protocol-level prepared statements, which
    PgBouncer 1.21+ also carries in transaction pooling mode with max_prepared_statements set).
    Django's other cursors bind on the client and never prepare, so the threshold set here
    concerns this cursor alone."""
    connection.close_if_health_check_failed()  # as Django's cursors do: a kept connection may be dead
    connection.ensure_connection()
    raw = connection.connection
    raw.prepare_threshold = 0
    with connection.wrap_database_errors:
        pg_cursor = psycopg.Cursor(raw)
        # psycopg's own timestamptz loader (C code in psycopg[binary]) in place of Django's
        # subclass of the pure-Python one, which only sets the session's time zone, UTC here as
        # well: parsing the link's four timestamps was nearly a tenth of a download request's CPU
        # time.
        pg_cursor.adapters.register_loader("timestamptz", _PSYCOPG_TIMESTAMPTZ_LOADER)
        cursor = connection._prepare_cursor(pg_cursor)
    with cursor:
        yield cursor


_PSYCOPG_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(
    psycopg.adapters.types["timestamptz"].oid, psycopg.pq.Format.TEXT
)


def gateway_leak_check(link: GatewayLink, *, network: str) -> GatewayLink:
    """The leak rule, run only when this request could cross the limit: its network is new to the
    grant within the window. Returns the link as the leak rule left it (suspended or not)."""
    if link.bundle_suspended_at is not None or link.network_seen or not network:
        return link
    bundle = DownloadBundle(
        pk=link.bundle_id, grant_id=link.grant_id, suspended_at=None, retired_at=link.bundle_retired_at
    )
    if leak.bundle_leak_check(bundle, network=network):
        return replace(link, bundle_suspended_at=bundle.suspended_at)
    if bundle.suspended_at is not None:  # suspended meanwhile by another request or a reviewer
        return replace(link, bundle_suspended_at=bundle.suspended_at)
    return link


def gateway_authorize(link: GatewayLink | None) -> DownloadOutcome:
    """bundle_authorize for a link loaded by gateway_link_load, without further queries."""
    if link is None:
        return UNKNOWN
    return bundle_outcome(
        now=link.now,
        retired_at=link.bundle_retired_at,
        expires_at=link.bundle_expires_at,
        suspended_at=link.bundle_suspended_at,
        grant_expires_at=link.grant_expires_at,
        variant_name=link.variant_name,
        effective_status=lambda: link.effective_status,
    )
