"""A researcher with sandbox access, through the same grant rules as downloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Exchange, Queue

from access.catalog.models import ModelVariant
from portal.celery import app as celery_app
from portal.services import api_token_create
from tests.processes import subprocess_database_url


@pytest.fixture
def sandbox_grant(researcher, reviewer, llama_catalog, active_grant_make):
    """An active grant for llama-7b, which the seeded catalog offers in the sandbox."""
    return active_grant_make(user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), reviewer=reviewer)


@pytest.fixture
def api_key():
    """api_key(user): a new personal API token's secret, as the openai client's api_key."""

    def make(user) -> str:
        return api_token_create(user=user, name="sandbox test")[1]

    return make


# --- A real sandbox worker process -----------------------------------------------------------------
#
# One worker per test module (start-up, torch's import and the first model load take seconds),
# consuming a queue of its own on the configured broker (Redis in CI, the filesystem broker
# elsewhere), with the weights, stream logs and checkpoint cache in folders of the module's own.
# Each test publishes the demo weights again (the database is emptied between tests); the files
# are the same, so the worker's cached copy and loaded model stay valid.

WORKER_START_SECONDS = 60


@pytest.fixture(scope="module")
def sandbox_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    return {
        "PORTAL_STORAGE_BACKEND": "local",
        "PORTAL_STORAGE_ROOT": str(root / "weight-storage"),
        "SANDBOX_STREAM_DIR": str(root / "streams"),
        "SANDBOX_CACHE_DIR": str(root / "cache"),
        "SANDBOX_QUEUE": f"test-sandbox-{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
def sandbox_settings(settings, sandbox_folders):
    """This process's settings pointed at the module worker's folders and queue."""
    from access.distribution.storage import weight_storage

    settings.PORTAL_STORAGE_BACKEND = "local"
    settings.PORTAL_STORAGE_ROOT = sandbox_folders["PORTAL_STORAGE_ROOT"]
    settings.SANDBOX_STREAM_DIR = Path(sandbox_folders["SANDBOX_STREAM_DIR"])
    settings.SANDBOX_CACHE_DIR = Path(sandbox_folders["SANDBOX_CACHE_DIR"])
    settings.SANDBOX_QUEUE = sandbox_folders["SANDBOX_QUEUE"]
    weight_storage.cache_clear()
    yield settings
    weight_storage.cache_clear()


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-6000:] if path.exists() else "(no worker log)"


class SandboxWorker:
    """A `celery worker -Q <queue> --pool threads` process; ``restart()`` after a kill."""

    def __init__(self, env: dict, queue: str, log_path: Path):
        self.env, self.queue, self.log_path = env, queue, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads", "--concurrency", "8",
            "--loglevel", "INFO", "--queues", self.queue, "--hostname", f"{self.queue}@%h",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 (the worker writes to it until it stops)
        self.process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + WORKER_START_SECONDS
        while "ready." not in _log_tail(self.log_path).split(f"pid={self.process.pid}")[-1]:
            if self.process.poll() is not None:
                pytest.fail(f"the sandbox worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the sandbox worker was not ready in {WORKER_START_SECONDS} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return _log_tail(self.log_path)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def sandbox_worker(django_db_setup, django_db_blocker, sandbox_folders, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("sandbox-worker") / "worker.log"
    env = {
        **os.environ,
        **sandbox_folders,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": subprocess_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SANDBOX_TRANSPORT": settings.SANDBOX_TRANSPORT,
        "SANDBOX_HEARTBEAT_TIMEOUT_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
    }
    worker = SandboxWorker(env, sandbox_folders["SANDBOX_QUEUE"], log_path)
    worker.start()
    yield worker
    worker.stop()
    with celery_app.connection_for_write() as conn:
        queue = sandbox_folders["SANDBOX_QUEUE"]
        worker_queue = Queue(queue, Exchange(queue), routing_key=queue).bind(conn.default_channel)
        worker_queue.declare()
        worker_queue.delete()


@pytest.fixture
def sandbox_ready(sandbox_worker, sandbox_settings, transactional_db, llama_catalog, demo_checkpoint):
    """The demo variant published where the worker reads it; returns the variant."""
    from access.distribution.publishing import weights_publish

    settings_ = sandbox_settings
    settings_.SANDBOX_HEARTBEAT_TIMEOUT_SECONDS = 3
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    weights_publish(variant=variant, source_dir=demo_checkpoint)
    return variant


@pytest.fixture
def demo_grant(sandbox_ready, researcher, reviewer, active_grant_make):
    return active_grant_make(user=researcher, variant=sandbox_ready, reviewer=reviewer)


@pytest.fixture
def openai_client(live_server, researcher, api_key):
    """openai_client(base="/v1", key=None): the official client as the researcher (no retries)."""
    import openai

    def make(base: str = "/v1", key: str | None = None, timeout: float = 30):
        return openai.OpenAI(
            base_url=f"{live_server.url}{base}", api_key=key or api_key(researcher), max_retries=0, timeout=timeout
        )

    return make
