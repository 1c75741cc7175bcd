"""Checks behind /healthz: the database, the Celery broker and weight storage."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import connection

from access.distribution.storage import weight_storage

logger = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.HEALTHZ_BROKER_TIMEOUT_SECONDS)
        # A filesystem broker "connects" to any path; make sure its folder is there.
        if conn.transport_cls == "filesystem" or conn.transport.driver_type == "filesystem":
            from pathlib import Path

            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
            if not Path(folder).is_dir():
                raise OSError(f"broker folder {folder} is missing")


def check_storage() -> None:
    weight_storage().check()


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


def health_report() -> tuple[bool, dict]:
    results = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # a health check reports every failure, whatever its type
            healthy = False
            # /healthz is public: the detail (hosts, paths, bucket names) goes to the log only.
            logger.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = {"ok": False, "error": f"{name} unavailable; see the portal's log"}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    return healthy, {"status": "ok" if healthy else "unavailable", "checks": results}
