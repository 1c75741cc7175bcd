"""Django's PostgreSQL backend, whose health check of a kept connection (CONN_HEALTH_CHECKS, run
once per request before its first query) asks the socket before it asks the server.

Production keeps each process's connection between requests (DATABASE_CONN_MAX_AGE). When
PostgreSQL restarts, the server ends every connection, and one kept by a process that served
nobody meanwhile is dead: without a check, that process's next request fails on it. Django's
own check sends ``SELECT 1`` before every request, a round trip that would cost the download
gateway (one statement per request) a noticeable share of its time. Here the check looks first
whether anything is waiting on the idle connection's socket: nothing, and the connection is as
it was left; the server's goodbye (or an end of file) makes it readable, and only then does the
usual ``SELECT 1`` decide. A connection that died without a word (a host gone, a cable cut) is
not caught here, as it is not by Django's check until the query times out.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        try:
            waiting, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError, base.Database.Error):  # closed: no descriptor any more
            return False
        return not waiting or super().is_usable()
