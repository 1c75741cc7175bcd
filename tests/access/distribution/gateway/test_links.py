"""Loading a link for the gateway (``access.distribution.gateway.links``): on PostgreSQL its one
SELECT runs on a cursor that binds on the server and is prepared once per connection
(``pg_prepared_cursor``), built on a private hook of Django's database wrapper."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from access.distribution.gateway.links import pg_prepared_cursor


@pytest.mark.postgres
def test_the_prepared_cursor_still_finds_djangos_private_cursor_hook_and_runs_a_query(db):
    assert callable(getattr(connection, "_prepare_cursor", None)), (
        "Django's DatabaseWrapper no longer has the private _prepare_cursor() that "
        "access/distribution/gateway/links.py pg_prepared_cursor() wraps its psycopg cursor with "
        "(Django's error translation, query logging and connection health checks). Wrap the cursor "
        "the way this Django's DatabaseWrapper.cursor() now does, or fall back to connection.cursor() "
        "(client-side binding, no prepared statement), before upgrading Django."
    )

    with pg_prepared_cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()

    assert row == (1,)
    # Server-side binding: a plain psycopg cursor, not the ClientCursor Django's own cursors are.
    assert type(cursor.cursor) is psycopg.Cursor
    assert connection.connection.prepare_threshold == 0
