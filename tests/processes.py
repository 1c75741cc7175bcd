"""Helpers for tests that start real server processes (Celery workers, gunicorn) against the test
database."""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import tempfile
import time
from urllib.parse import quote

import pytest
from django.conf import settings
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


@contextlib.contextmanager
def http_server(name: str, command: list[str], *, port: int, env: dict, start_seconds: float = 60):
    """Run a server process (its command binds ``port``) until it answers GET /livez; yields a
    function returning the tail of its output. Stopped with SIGTERM (then SIGKILL) at the end."""
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)

        def log_tail() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        try:
            deadline = time.monotonic() + start_seconds
            while True:
                if server.poll() is not None:
                    pytest.fail(f"{name} exited with {server.returncode}:\n{log_tail()}")
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/livez")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not answer in {start_seconds} s:\n{log_tail()}")
                time.sleep(0.2)
            yield log_tail
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
