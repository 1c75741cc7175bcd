"""Download bundles and links: creating them, checking a gateway request against
them, logging every request, and the leak rule.

A link's URL carries ``Signer(salt=...)`` around the link's random ``public_id``:
unguessable (128 random bits), and a token made up from a copy of the database
alone does not verify, because the signature needs the site's secret key. A token
whose signature fails is refused before any query.

Counting: a request that starts a file at byte 0 uses one of the link's downloads,
taken by one guarded UPDATE (``downloads_used < max_downloads``), so concurrent
first requests can never use more than the link allows. A resume (a Range that
starts later in the file) is free once the link has been used. On a link never
used it counts as a start instead of being refused: a researcher whose links
expired mid-file creates new ones and resumes the partial file with them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache, lru_cache, partial

import psycopg
from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from access.models import (
    DownloadBundle,
    DownloadEvent,
    DownloadLink,
    Grant,
    GrantStatus,
    LicenseAcceptance,
    LicenseVersion,
    ModelVariant,
    WeightFile,
)
from access.notifications import absolute_url
from access.selectors import grant_status_effective, grants_annotate_effective_status
from access.services.audit import audit_event_record, request_client_ip
from portal.errors import StateConflict

logger = logging.getLogger(__name__)

LINK_TOKEN_SALT = "access.downloads.link"
BUNDLE_TOKEN_SALT = "access.downloads.bundle"
_TOKEN_SEP = "."  # not ":" so tokens need no escaping in shells or URLs


# --- Tokens and paths ------------------------------------------------------------------


def link_token(link: DownloadLink) -> str:
    return signing.Signer(salt=LINK_TOKEN_SALT, sep=_TOKEN_SEP).sign(link.public_id)


def bundle_token(bundle: DownloadBundle) -> str:
    return signing.Signer(salt=BUNDLE_TOKEN_SALT, sep=_TOKEN_SEP).sign(bundle.public_id)


def _unsign(token: str, salt: str) -> str | None:
    try:
        return signing.Signer(salt=salt, sep=_TOKEN_SEP).unsign(token)
    except signing.BadSignature:
        return None


def link_public_id(token: str) -> str | None:
    """The public id a link token signs, or None if the token is not one of ours."""
    return _unsign(token, LINK_TOKEN_SALT)


def link_from_token(token: str) -> DownloadLink | None:
    public_id = link_public_id(token)
    if public_id is None:
        return None
    return (
        DownloadLink.objects.select_related("file", "bundle__grant__variant__family", "bundle__grant__user")
        .filter(public_id=public_id)
        .first()
    )


def bundle_from_token(token: str) -> DownloadBundle | None:
    public_id = _unsign(token, BUNDLE_TOKEN_SALT)
    if public_id is None:
        return None
    bundles = DownloadBundle.objects.select_related("grant__variant__family", "grant__user")
    return bundles.filter(public_id=public_id).first()


def link_path(link: DownloadLink) -> str:
    return reverse("download-file", args=[link_token(link), link.file.name])


def bundle_script_path(bundle: DownloadBundle) -> str:
    return reverse("download-script", args=[bundle_token(bundle)])


def bundle_manifest_path(bundle: DownloadBundle) -> str:
    return reverse("download-manifest", args=[bundle_token(bundle)])


def download_absolute_url(path: str, request=None) -> str:
    """The URL as the client reached us when there is a request, else from PORTAL_BASE_URL."""
    return request.build_absolute_uri(path) if request is not None else absolute_url(path)


def grants_page_url(request=None) -> str:
    return download_absolute_url(reverse("grants"), request)


# --- Creating bundles ------------------------------------------------------------------


def _unusable_grant_message(grant: Grant) -> str:
    status = grant.effective_status
    grants_page = grants_page_url()
    if status == GrantStatus.LICENSE_REQUIRED:
        version = grant.license_required.version if grant.license_required else "current"
        return (
            f"Accept the {version} license of {grant.variant.family.name} first, on {grants_page}; "
            "then create the download links."
        )
    if status == GrantStatus.SUSPENDED:
        return "Your access is suspended, so no download links can be made. A reviewer will contact you."
    if status == GrantStatus.REVOKED:
        return "Your access was revoked, so no download links can be made."
    if status == GrantStatus.EXPIRED:
        return f"Your access to {grant.variant.name} has ended. Apply again on {absolute_url(reverse('apply'))}."
    return f"This grant is {status}; download links need an active grant."


@transaction.atomic
def bundle_create(*, grant: Grant, user, request=None) -> DownloadBundle:
    """One link per published file of the grant's variant; retires the grant's previous bundle."""
    grant = Grant.objects.select_for_update().select_related("variant__family", "user").get(pk=grant.pk)
    if grant.user_id != getattr(user, "pk", None):
        raise PermissionDenied("Only the holder of a grant can create its download links.")
    grants_annotate_effective_status([grant])
    if grant.effective_status != GrantStatus.ACTIVE:
        raise StateConflict(_unusable_grant_message(grant), code="grant_not_usable")
    latest = DownloadBundle.objects.filter(grant=grant).order_by("-created_at", "-id").first()
    if latest is not None and latest.suspended_at is not None:
        # Otherwise new links would undo the leak rule the moment it fired.
        raise StateConflict(
            "Your download links were suspended because they were used from unusually many places. "
            "A reviewer will look into it and contact you; new links can be made once they have.",
            code="links_suspended",
        )
    files = list(WeightFile.objects.filter(variant=grant.variant).order_by("name"))
    if not files:
        raise StateConflict(
            f"No weight files of {grant.variant.name} have been published yet. Try again later; "
            "you will not need a new request.",
            code="nothing_published",
        )
    now = timezone.now()
    expires_at = now + dt.timedelta(hours=settings.DOWNLOAD_LINK_TTL_HOURS)
    if grant.expires_at is not None:
        expires_at = min(expires_at, grant.expires_at)
    retired = list(
        DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).values_list("public_id", flat=True)
    )
    DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).update(retired_at=now)
    bundle = DownloadBundle(grant=grant, created_at=now, expires_at=expires_at)
    bundle.full_clean()
    bundle.save()
    DownloadLink.objects.bulk_create(
        DownloadLink(bundle=bundle, file=weight_file, max_downloads=settings.DOWNLOAD_LINK_MAX_DOWNLOADS)
        for weight_file in files
    )
    audit_event_record(
        action="download.bundle_created",
        actor=user,
        target=bundle,
        request=request,
        details={
            "grant": grant.pk,
            "variant": grant.variant.slug,
            "files": len(files),
            "max_downloads": settings.DOWNLOAD_LINK_MAX_DOWNLOADS,
            "expires_at": expires_at.isoformat(),
            "retired_bundles": retired,
        },
    )
    return bundle


def bundle_current(grant: Grant) -> DownloadBundle | None:
    """The grant's live (not retired) bundle, if any."""
    return DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).order_by("-created_at", "-id").first()


def bundle_files(bundle: DownloadBundle, request=None) -> list[dict]:
    """The bundle's files with their gateway URLs, as the API and the pages show them."""
    links = bundle.links.select_related("file").order_by("file__name")
    return [
        {
            "name": link.file.name,
            "size": link.file.size,
            "sha256": link.file.sha256,
            "md5": link.file.md5,
            "url": download_absolute_url(link_path(link), request),
            "downloads_left": link.downloads_left,
        }
        for link in links
    ]


def bundle_manifest(bundle: DownloadBundle, request=None) -> dict:
    return {
        "model": bundle.grant.variant.slug,
        "bundle": bundle.public_id,
        "expires_at": bundle.expires_at.isoformat(),
        "files": [
            {key: entry[key] for key in ("name", "url", "size", "sha256", "md5")}
            for entry in bundle_files(bundle, request)
        ],
    }


# --- Suspension and the leak rule -------------------------------------------------------


@transaction.atomic
def bundle_suspend(
    *, bundle: DownloadBundle, reason: str, actor=None, request=None, networks: Iterable[str] = ()
) -> bool:
    """Block every link of the bundle at once. ``networks``: those the leak rule counted, which a
    reviewer who lifts the suspension clears. False if it was already suspended."""
    locked = (
        DownloadBundle.objects.select_for_update().select_related("grant__user", "grant__variant").get(pk=bundle.pk)
    )
    if locked.suspended_at is not None:
        bundle.suspended_at, bundle.suspended_reason = locked.suspended_at, locked.suspended_reason
        return False
    locked.suspended_at = timezone.now()
    locked.suspended_reason = reason.strip()
    locked.leak_flagged_networks = sorted(networks) if networks else None
    locked.save(update_fields=["suspended_at", "suspended_reason", "leak_flagged_networks"])
    bundle.suspended_at, bundle.suspended_reason = locked.suspended_at, locked.suspended_reason
    audit_event_record(
        action="download.bundle_suspended",
        actor=actor,
        target=locked,
        request=request,
        details={"grant": locked.grant_id, "user": locked.grant.user.email, "reason": locked.suspended_reason},
    )
    return True


@transaction.atomic
def bundle_unsuspend(*, bundle: DownloadBundle, actor, reason: str, request=None) -> DownloadBundle:
    """A reviewer lifts a suspension after looking into it: the links work again (if not expired
    or replaced) and the researcher may create new ones."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the suspension is lifted; it goes in the audit log."]})
    locked = DownloadBundle.objects.select_for_update().select_related("grant__user").get(pk=bundle.pk)
    if locked.grant.user_id == getattr(actor, "pk", None):
        raise PermissionDenied("You cannot lift a suspension of your own download links.")
    if locked.suspended_at is None:
        raise StateConflict("These links are not suspended.", code="not_suspended")
    previous = locked.suspended_reason
    locked.suspended_at, locked.suspended_reason = None, ""
    # The networks the leak rule named in the suspension are the ones the reviewer looked into:
    # counted again, they would trip the rule at the next new network. Networks refused while
    # the links were suspended were named nowhere, so they still count.
    if locked.leak_flagged_networks:
        cleared = set(locked.leak_cleared_networks or ()) | set(locked.leak_flagged_networks)
        locked.leak_cleared_networks = sorted(cleared)
    locked.save(update_fields=["suspended_at", "suspended_reason", "leak_cleared_networks"])
    audit_event_record(
        action="download.bundle_unsuspended",
        actor=actor,
        target=locked,
        request=request,
        details={"grant": locked.grant_id, "reason": reason, "suspended_for": previous},
    )
    return locked


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
    from access.tasks import notify_download_leak_suspected  # tasks import services; avoid the cycle

    notify_download_leak_suspected.delay(bundle_id)


# --- The gateway's decision and log -----------------------------------------------------


@dataclass(frozen=True)
class DownloadOutcome:
    """What the gateway answers: ``allowed`` or the reason for refusing, with the message to show."""

    name: str
    status: int
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.name == "allowed"


ALLOWED = DownloadOutcome("allowed", 200)


UNKNOWN = DownloadOutcome(
    "unknown", 404, "This download link is not valid. Copy the whole link, or create new links on {grants}."
)


def bundle_authorize(*, bundle: DownloadBundle | None, request=None) -> DownloadOutcome:
    """Checks shared by a bundle's links, script and manifest: unknown, retired, expired, grant, suspension."""
    if bundle is None:
        return UNKNOWN
    grant = bundle.grant

    def effective_status() -> str:
        return grants_annotate_effective_status([grant])[0].effective_status

    return _bundle_outcome(
        now=timezone.now(),
        retired_at=bundle.retired_at,
        expires_at=bundle.expires_at,
        suspended_at=bundle.suspended_at,
        grant_expires_at=grant.expires_at,
        variant_name=grant.variant.name,
        effective_status=effective_status,
    )


def _bundle_outcome(
    *, now, retired_at, expires_at, suspended_at, grant_expires_at, variant_name, effective_status
) -> DownloadOutcome:
    """The bundle checks in their order; ``effective_status`` is called only once the dates pass."""
    if retired_at is not None:
        return DownloadOutcome(
            "retired", 410, "These links were replaced by newer ones. Use the newest links on {grants}."
        )
    if expires_at <= now:
        return DownloadOutcome(
            "expired",
            410,
            f"These links expired at {expires_at:%Y-%m-%d %H:%M} UTC. Create new links on {{grants}}; "
            "files you have partly downloaded will resume.",
        )
    if grant_expires_at is not None and grant_expires_at <= now:
        return DownloadOutcome(
            "grant_ended",
            410,
            f"Your access to {variant_name} ended at {grant_expires_at:%Y-%m-%d %H:%M} UTC. "
            "Apply again to download it.",
        )
    status = effective_status()
    if status == GrantStatus.REVOKED:
        return DownloadOutcome("revoked", 403, "Your access to this model was revoked; these links no longer work.")
    if status == GrantStatus.SUSPENDED:
        return DownloadOutcome(
            "grant_suspended", 403, "Your access to this model is suspended; a reviewer will contact you."
        )
    if status == GrantStatus.EXPIRED:
        return DownloadOutcome("grant_expired", 403, "Your access to this model has ended. Apply again on the portal.")
    if status == GrantStatus.LICENSE_REQUIRED:
        return DownloadOutcome(
            "license_outdated",
            403,
            "The model's license has changed. Accept the current license on {grants}; these links then work again.",
        )
    if suspended_at is not None:
        return DownloadOutcome(
            "bundle_suspended",
            403,
            "These links are suspended because they were used from unusually many places. "
            "A reviewer will contact you; do not share download links.",
        )
    return ALLOWED


# --- The gateway's hot path -------------------------------------------------------------
#
# A link request is decided from one hand-written SELECT and counted and logged in one
# transaction: the ORM's select_related of four wide rows (the model card included) and its
# separate license, leak and log queries, each committed on its own, cost ten times the
# request itself. The rules are the same as bundle_authorize and bundle_leak_check above.


@dataclass(frozen=True)
class GatewayLink:
    """What the gateway needs to decide and log one link request, as of ``now``."""

    id: int
    max_downloads: int
    downloads_used: int
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
    license_id: int | None  # the family's license in force at ``now``
    license_accepted: bool  # by the grant's holder
    network_seen: bool  # a request from this network got through the leak rule within its window
    now: dt.datetime  # the moment all of the above was read for

    @property
    def effective_status(self) -> str:
        return grant_status_effective(
            status=self.grant_status,
            expires_at=self.grant_expires_at,
            needs_license=self.license_id is not None and not self.license_accepted,
            now=self.now,
        )


def _columns(model, *names: str) -> list[str]:
    return [model._meta.get_field(name).column for name in names]


@cache
def _gateway_link_sql() -> str:
    link, weight_file, bundle, grant = (m._meta.db_table for m in (DownloadLink, WeightFile, DownloadBundle, Grant))
    variant, license_version = ModelVariant._meta.db_table, LicenseVersion._meta.db_table
    acceptance, event = LicenseAcceptance._meta.db_table, DownloadEvent._meta.db_table
    l_id, l_max, l_used, l_bundle, l_file, l_public = _columns(
        DownloadLink, "id", "max_downloads", "downloads_used", "bundle", "file", "public_id"
    )
    f_id, f_name, f_size, f_sha, f_key = _columns(WeightFile, "id", "name", "size", "sha256", "storage_key")
    b_id, b_expires, b_retired, b_suspended, b_grant = _columns(
        DownloadBundle, "id", "expires_at", "retired_at", "suspended_at", "grant"
    )
    g_id, g_status, g_expires, g_user, g_variant = _columns(Grant, "id", "status", "expires_at", "user", "variant")
    v_id, v_name, v_family = _columns(ModelVariant, "id", "name", "family")
    lv_id, lv_family, lv_effective = _columns(LicenseVersion, "id", "family", "effective_at")
    a_user, a_license = _columns(LicenseAcceptance, "user", "license")
    e_bundle, e_created, e_network, e_status = _columns(DownloadEvent, "bundle", "created_at", "network", "status_code")
    # Placeholders in order: now, network, since, public_id. The license subquery orders as
    # license_current. Whether a request from this network already got through the leak rule
    # within its window is one index probe; only a new network can cross the leak limit, and for
    # those rare requests bundle_leak_check counts the networks.
    inner = f"""
        SELECT l.{l_id} AS link_id, l.{l_max} AS max_downloads, l.{l_used} AS downloads_used,
               f.{f_id} AS file_id, f.{f_name} AS file_name, f.{f_size} AS file_size, f.{f_sha} AS file_sha256,
               f.{f_key} AS storage_key, b.{b_id} AS bundle_id, b.{b_expires} AS bundle_expires_at,
               b.{b_retired} AS retired_at, b.{b_suspended} AS suspended_at, g.{g_id} AS grant_id,
               g.{g_status} AS grant_status, g.{g_expires} AS grant_expires_at, g.{g_user} AS user_id,
               v.{v_name} AS variant_name,
               (SELECT lv.{lv_id} FROM {license_version} lv
                 WHERE lv.{lv_family} = v.{v_family} AND lv.{lv_effective} <= %s
                 ORDER BY lv.{lv_effective} DESC, lv.{lv_id} DESC LIMIT 1) AS license_id,
               EXISTS (SELECT 1 FROM {event} e
                        WHERE e.{e_bundle} = b.{b_id} AND e.{e_network} = %s AND e.{e_created} >= %s
                          AND e.{e_status} < 400)
                 AS network_seen
          FROM {link} l
          JOIN {weight_file} f ON f.{f_id} = l.{l_file}
          JOIN {bundle} b ON b.{b_id} = l.{l_bundle}
          JOIN {grant} g ON g.{g_id} = b.{b_grant}
          JOIN {variant} v ON v.{v_id} = g.{g_variant}
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
    with _pg_prepared_cursor() if connection.vendor == "postgresql" else connection.cursor() as cursor:
        cursor.execute(_gateway_link_sql(), params)
        row = cursor.fetchone()
    return None if row is None else _gateway_link_from_row(row, now)


def _gateway_link_from_row(row, now: dt.datetime) -> GatewayLink:
    (link_id, max_downloads, used, file_id, file_name, file_size, file_sha256, storage_key, bundle_id,
     bundle_expires_at, retired_at, suspended_at, grant_id, grant_status, grant_expires_at, user_id,
     variant_name, license_id, network_seen, license_accepted) = row  # fmt: skip
    return GatewayLink(
        id=link_id,
        max_downloads=max_downloads,
        downloads_used=used,
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
        license_id=license_id,
        license_accepted=bool(license_accepted),
        network_seen=bool(network_seen),
        now=now,
    )


@contextmanager
def _pg_prepared_cursor():
    """A cursor whose statements PostgreSQL prepares at their first run on a connection.

    Django binds parameters on the client, so PostgreSQL parses and plans every query afresh: for
    the gateway's SELECT that costs more than running it. This cursor binds on the server and
    psycopg prepares each statement once per connection (protocol-level prepared statements, which
    PgBouncer 1.21+ also carries in transaction pooling mode with max_prepared_statements set).
    Django's other cursors bind on the client and never prepare, so the threshold set here
    concerns this cursor alone."""
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
    """bundle_leak_check, run only when this request could cross the limit: its network is new
    to the bundle within the window. Returns the link as the leak rule left it (suspended or not)."""
    if link.bundle_suspended_at is not None or link.network_seen or not network:
        return link
    bundle = DownloadBundle(pk=link.bundle_id, grant_id=link.grant_id, suspended_at=None)
    if bundle_leak_check(bundle, network=network):
        return replace(link, bundle_suspended_at=bundle.suspended_at)
    if bundle.suspended_at is not None:  # suspended meanwhile by another request or a reviewer
        return replace(link, bundle_suspended_at=bundle.suspended_at)
    return link


def gateway_authorize(link: GatewayLink | None) -> DownloadOutcome:
    """bundle_authorize for a link loaded by gateway_link_load, without further queries."""
    if link is None:
        return UNKNOWN
    return _bundle_outcome(
        now=link.now,
        retired_at=link.bundle_retired_at,
        expires_at=link.bundle_expires_at,
        suspended_at=link.bundle_suspended_at,
        grant_expires_at=link.grant_expires_at,
        variant_name=link.variant_name,
        effective_status=lambda: link.effective_status,
    )


def _exhausted(link) -> DownloadOutcome:
    return DownloadOutcome(
        "exhausted",
        403,
        f"This file's link was used for all of its {link.max_downloads} downloads. "
        "Create new links on {grants}; a partly downloaded file can still be resumed with the old link.",
    )


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
        return (ALLOWED if counted else _exhausted(link)), counted, event_id
    with transaction.atomic():
        if needs_count and failure is not None:
            outcome = _exhausted(link) if link.downloads_used >= link.max_downloads else failure
            return outcome, False, _gateway_event_insert(link, request, ip, network, outcome, False, None)
        counted = False
        if needs_count:
            counted = _link_take(link.id)
            if not counted:
                outcome = _exhausted(link)
                return outcome, False, _gateway_event_insert(link, request, ip, network, outcome, False, None)
        if failure is not None:
            return failure, False, _gateway_event_insert(link, request, ip, network, failure, False, None)
        return ALLOWED, counted, _gateway_event_insert(link, request, ip, network, served, counted, bytes_sent)


@cache
def _link_take_sql() -> str:
    table = DownloadLink._meta.db_table
    l_id, l_max, l_used = _columns(DownloadLink, "id", "max_downloads", "downloads_used")
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
    columns = ", ".join(_columns(DownloadEvent, *_EVENT_FIELDS))
    event_id, counted = _columns(DownloadEvent, "id", "counted")
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
    exhausted = _exhausted(link)
    params = [
        link.id, link.id, link.bundle_id, link.grant_id, link.file_id, timezone.now(), ip, network,
        request.META.get("HTTP_USER_AGENT", "")[:512], request.META.get("HTTP_RANGE", "")[:200],
        exhausted.status, served.status, exhausted.name, served.name, bytes_sent,
    ]  # fmt: skip
    with _pg_prepared_cursor() as cursor:
        cursor.execute(_pg_take_and_log_sql(), params)
        event_id, counted = cursor.fetchone()
    return counted, event_id


# --- PostgreSQL's one-statement path for a plainly allowed first request ----------------
#
# Most link requests are allowed, so on PostgreSQL the gateway first tries to load the link,
# count the download and log the request in one statement, one round trip. The statement takes
# the download only when the loaded row passes a conservative predicate: the request's name
# matches, its network already used the bundle, and the bundle and grant are plainly in force.
# Python's rules (gateway_authorize) stay the authority: the view checks the loaded link with
# them as always, and if they refuse what the statement took, download_give_back undoes it.


@cache
def _pg_fast_take_sql() -> str:
    l_table = DownloadLink._meta.db_table
    l_id, l_max, l_used = _columns(DownloadLink, "id", "max_downloads", "downloads_used")
    columns = ", ".join(_columns(DownloadEvent, *_EVENT_FIELDS))
    event_id = _columns(DownloadEvent, "id")[0]
    # Placeholders: the load's four (now, network, since, public_id); the predicate's name, now,
    # now, active; then the event's created_at, ip, network, user_agent, range, status, outcome, and
    # whether to log the file's size as the bytes sent.
    return f"""
        WITH q AS ({_gateway_link_sql()}),
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
        timezone.now(), ip, network, request.META.get("HTTP_USER_AGENT", "")[:512],
        request.META.get("HTTP_RANGE", "")[:200], served.status, served.name, log_file_size,
    ]  # fmt: skip
    with _pg_prepared_cursor() as cursor:
        cursor.execute(_pg_fast_take_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None, None
    return _gateway_link_from_row(row[:-1], now), row[-1]


def download_give_back(link: GatewayLink, event_id: int, outcome: DownloadOutcome) -> None:
    """Undo a download the one-statement path took for a request the rules then refused (or that
    storage could not serve): the link gets it back and the logged request shows the refusal."""
    logger.warning("gateway: giving back download of link %s (%s)", link.id, outcome.name)
    with transaction.atomic():
        DownloadLink.objects.filter(pk=link.id, downloads_used__gt=0).update(downloads_used=F("downloads_used") - 1)
        DownloadEvent.objects.filter(pk=event_id).update(
            status_code=outcome.status, outcome=outcome.name, counted=False, bytes_sent=None
        )


_EVENT_FIELDS = (
    "link", "bundle", "grant", "file", "created_at", "ip_address", "network", "user_agent", "range_header",
    "status_code", "outcome", "counted", "bytes_sent",
)  # fmt: skip


@cache
def _event_insert_sql() -> str:
    columns = ", ".join(_columns(DownloadEvent, *_EVENT_FIELDS))
    placeholders = ", ".join(["%s"] * len(_EVENT_FIELDS))
    return f"INSERT INTO {DownloadEvent._meta.db_table} ({columns}) VALUES ({placeholders})"


def _gateway_event_insert(
    link: GatewayLink | None, request, ip, network, outcome: DownloadOutcome, counted: bool, bytes_sent
) -> int:
    """download_event_record without the ORM's model instance; the same row."""
    values = {
        "link": link.id if link else None,
        "bundle": link.bundle_id if link else None,
        "grant": link.grant_id if link else None,
        "file": link.file_id if link else None,
        "created_at": timezone.now(),
        "ip_address": ip,
        "network": network,
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:512],
        "range_header": request.META.get("HTTP_RANGE", "")[:200],
        "status_code": outcome.status,
        "outcome": outcome.name,
        "counted": counted,
        "bytes_sent": bytes_sent,
    }
    params = [
        DownloadEvent._meta.get_field(name).get_db_prep_save(values[name], connection) for name in _EVENT_FIELDS
    ]
    returning = connection.features.can_return_columns_from_insert
    with connection.cursor() as cursor:
        returning_id = " RETURNING " + _columns(DownloadEvent, "id")[0] if returning else ""
        cursor.execute(_event_insert_sql() + returning_id, params)
        return cursor.fetchone()[0] if returning else cursor.lastrowid


def gateway_event_record(
    *, request, link: GatewayLink | None, outcome: DownloadOutcome, ip: str | None, network: str
) -> int:
    """Log a gateway request refused before any counting (method, unknown link, name, bundle checks)."""
    return _gateway_event_insert(link, request, ip, network, outcome, False, None)


def download_event_record(
    *,
    request,
    status_code: int,
    outcome: str,
    link: DownloadLink | None = None,
    bundle: DownloadBundle | None = None,
    counted: bool = False,
    bytes_sent: int | None = None,
    network: str | None = None,
) -> DownloadEvent:
    """One row per gateway request, good or bad: who fetched what, from where, and what they got."""
    if link is not None and bundle is None:
        bundle = link.bundle
    ip = request_client_ip(request)
    return DownloadEvent.objects.create(
        link=link,
        bundle=bundle,
        grant_id=bundle.grant_id if bundle is not None else None,
        file_id=link.file_id if link is not None else None,
        ip_address=ip,
        network=client_network(ip) if network is None else network,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        range_header=request.META.get("HTTP_RANGE", "")[:200],
        status_code=status_code,
        outcome=outcome,
        counted=counted,
        bytes_sent=bytes_sent,
    )


def download_event_bytes_sent(event_id: int, bytes_sent: int) -> None:
    DownloadEvent.objects.filter(pk=event_id).update(bytes_sent=bytes_sent)
