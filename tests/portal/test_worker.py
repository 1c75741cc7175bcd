"""A real Celery worker process runs the housekeeping task against the test database.

Not eager mode: the task goes through a real broker of the configured kind (the
filesystem broker, in a var/ folder of the test's own; Redis in CI), and a
separate `celery worker` process picks it up and deletes rows the test can see.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from kombu import Connection, Exchange, Queue

from portal.celery import app as celery_app
from portal.tasks import sessions_clear_expired
from tests.processes import subprocess_database_url

WORKER_START_AND_RUN_SECONDS = 30


@contextlib.contextmanager
def _broker_for_worker(tmp_path):
    """The worker's extra environment, and a connection to send it tasks.

    Redis (CI) is the configured broker as it is. The filesystem broker moves to
    a var/ folder of this test's own, laid out as settings.py lays out var/, so
    the worker leaves no queue, binding or message in the developer's var/.
    """
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        with celery_app.connection_for_write() as conn:
            yield {}, conn
        return
    var_dir = tmp_path / "var"
    broker_dir = var_dir / "celery-broker"
    for folder in ("queue", "processed", "control"):
        (broker_dir / folder).mkdir(parents=True)
    options = {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "processed_folder": str(broker_dir / "processed"),
        "control_folder": str(broker_dir / "control"),
        "store_processed": False,
    }
    with Connection("filesystem://", transport_options=options) as conn:
        yield {"PORTAL_VAR_DIR": str(var_dir)}, conn


def _session(*, expires_at: dt.datetime) -> str:
    store = SessionStore()
    store["note"] = "test"
    store.create()
    Session.objects.filter(session_key=store.session_key).update(expire_date=expires_at)
    return store.session_key


def _log_tail(path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no worker log)"


def _start_worker(*, queue: str, broker_env: dict, log_path) -> subprocess.Popen:
    env = {
        **os.environ,
        **broker_env,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": subprocess_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "portal", "worker",
        "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO",
        "--queues", queue, "--hostname", f"{queue}@%h",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.real_worker
def test_worker_process_clears_expired_sessions_through_the_broker(transactional_db, tmp_path):
    expired = _session(expires_at=timezone.now() - dt.timedelta(days=1))
    current = _session(expires_at=timezone.now() + dt.timedelta(days=1))
    # A queue of its own, so another worker on the same broker (a dev server, a
    # parallel test run) cannot take this task to a different database.
    queue = f"test-worker-{uuid.uuid4().hex[:12]}"
    log_path = tmp_path / "worker.log"

    with _broker_for_worker(tmp_path) as (broker_env, broker_connection):
        worker = _start_worker(queue=queue, broker_env=broker_env, log_path=log_path)
        try:
            sessions_clear_expired.apply_async(queue=queue, connection=broker_connection)

            deadline = time.monotonic() + WORKER_START_AND_RUN_SECONDS
            while Session.objects.filter(session_key=expired).exists():
                if worker.poll() is not None:
                    pytest.fail(f"the worker exited with {worker.returncode}:\n{_log_tail(log_path)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the expired session was not cleared in time:\n{_log_tail(log_path)}")
                time.sleep(0.2)

            worker.terminate()  # warm shutdown: the worker finishes its task and exits
            assert worker.wait(timeout=20) == 0, _log_tail(log_path)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
            # The worker declared the queue and its binding on the broker; leave nothing behind.
            worker_queue = Queue(queue, Exchange(queue), routing_key=queue).bind(broker_connection.default_channel)
            worker_queue.declare()  # known to this process too, so that delete finds its binding
            worker_queue.delete()

    assert Session.objects.filter(session_key=current).exists()
    assert re.search(r"portal\.sessions_clear_expired\[[0-9a-f-]+\] succeeded in [0-9.]+s: 1\b", log_path.read_text())
