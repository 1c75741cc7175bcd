"""Migrations an operator may have to roll back, run in a process of their own on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

# Migrates a fresh database, logs a download whose link, bundle, grant and file rows are
# gone (the log table has no database constraints since 0007, and rows can be deleted outside
# the ORM), then rolls the log table back to 0006, which puts the constraints back.
_ROLLBACK_PROBE = """
import django
django.setup()
from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute(
        "INSERT INTO access_downloadevent (created_at, network, user_agent, range_header, status_code, outcome,"
        " counted, link_id, bundle_id, grant_id, file_id) VALUES ('2026-11-27 10:00:00+00', '203.0.113.0/24',"
        " 'curl/8', '', 200, 'served', %s, 990001, 990002, 990003, 990004)",
        [True],
    )
call_command("migrate", "access", "0006", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute("SELECT outcome, link_id, bundle_id, grant_id, file_id FROM access_downloadevent")
    print("ROWS", cursor.fetchall())
"""


ROLLBACK_DB = "portal_test_rollback"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_database_url(request, tmp_path):
    """The URL of an empty database of each kind: a file, or a throwaway database on the test
    run's PostgreSQL server (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rollback.sqlite3'}"
        return
    import psycopg

    server = urlsplit(os.environ["DATABASE_URL"])
    admin = server._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{ROLLBACK_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{ROLLBACK_DB}"')
    yield server._replace(path=f"/{ROLLBACK_DB}").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{ROLLBACK_DB}" WITH (FORCE)')


def test_the_leaner_event_log_migration_rolls_back_over_events_of_deleted_rows(tmp_path, fresh_database_url):
    env = {
        **{name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": fresh_database_url,
        "PORTAL_VAR_DIR": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", _ROLLBACK_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The request stays in the log; only the references to rows that no longer exist are cleared.
    assert "ROWS [('served', None, None, None, None)]" in result.stdout
