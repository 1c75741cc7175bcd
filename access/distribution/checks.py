"""System checks for deployments (they run with ``migrate``, so the compose logs show them)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register

LOCAL_STORAGE_STREAMED_BY_DJANGO = "access.W001"


@register()
def local_weight_storage_is_sent_by_nginx(app_configs=None, **kwargs):
    """In production, files in local storage should be sent by nginx (X-Accel-Redirect), not by the
    portal's processes: gunicorn kills a sync worker that has not reported for --timeout seconds,
    and a sync worker streaming a 16 GB shard reports nothing until it is done."""
    if not settings.PRODUCTION:
        return []
    if settings.PORTAL_STORAGE_BACKEND != "local" or settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX:
        return []
    return [
        Warning(
            "Weight files in local storage are streamed by the web processes, and gunicorn's sync workers are "
            "killed after --timeout seconds (60 in docker-compose.yml): longer downloads are cut off.",
            hint="Run gunicorn with --worker-class gthread (docker-compose.yml and the Dockerfile do), or set "
            "DOWNLOAD_ACCEL_REDIRECT_PREFIX=/protected-weights/ and mount PORTAL_STORAGE_ROOT into the nginx proxy "
            "(deploy/nginx.conf) for the files sent as published; fingerprinted copies are always streamed by the "
            "web processes.",
            id=LOCAL_STORAGE_STREAMED_BY_DJANGO,
        )
    ]


FINGERPRINT_KEYS_FROM_SECRET_KEY = "access.W002"


@register()
def fingerprint_keys_are_set(app_configs=None, **kwargs):
    """In production the fingerprints' master key should be its own setting: derived from
    SECRET_KEY, rotating SECRET_KEY would leave every copy already sent unidentifiable and refused."""
    if not settings.PRODUCTION or any(not key_id.startswith("secret-key-") for key_id in settings.FINGERPRINT_KEYS):
        return []
    return [
        Warning(
            "FINGERPRINT_KEYS is not set: the marks in downloaded weights are keyed from SECRET_KEY, so rotating "
            "SECRET_KEY makes every copy already sent unidentifiable (and its links refused).",
            hint="Set FINGERPRINT_KEYS=ID:SECRET (32+ characters; see .env.example) and keep the derived key listed "
            "after it for the copies already made: its id is in the WeightCopy rows.",
            id=FINGERPRINT_KEYS_FROM_SECRET_KEY,
        )
    ]
