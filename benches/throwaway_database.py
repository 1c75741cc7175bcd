"""A database of a bench's own: a fresh PostgreSQL database on the configured server (dropped at the
end), or a SQLite file in the bench's temporary folder when there is no PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit


def database_url(tmp: Path, name: str, *, server: str | None = None) -> tuple[str, str | None]:
    """(URL for the bench, server URL to drop the database from, or None for SQLite). ``server``
    overrides DATABASE_URL (a bench may find a local PostgreSQL itself)."""
    server = server or os.environ.get("DATABASE_URL", "")
    if not server or server.startswith("sqlite"):
        return f"sqlite:///{tmp / 'bench.sqlite3'}", None
    import psycopg

    parts = urlsplit(server)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parts._replace(path=f"/{name}").geturl(), admin


def drop_database(admin: str | None, name: str) -> None:
    if admin:
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
