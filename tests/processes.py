"""Helpers for tests that start real server processes (Celery workers, gunicorn) against the test
database."""

from __future__ import annotations

import socket
from urllib.parse import quote

import pytest
from django.db import connection


def subprocess_database_url() -> str:
    """A DATABASE_URL for another process that points at this test run's database."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            pytest.fail("the SQLite test database is in memory; another process cannot open it (see settings.py)")
        return f"sqlite:///{name}"
    if connection.vendor == "postgresql":
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "localhost"
        port = f":{db['PORT']}" if db["PORT"] else ""
        return f"postgres://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"
    pytest.fail(f"no DATABASE_URL for another process on {connection.vendor}")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now, for a server process to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
