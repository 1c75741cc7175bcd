"""Fault tests: the portal's real processes (gunicorn, Celery workers) against a PostgreSQL and a
Redis of their own, which a test stops and starts again mid-run.

Never the shared servers of the suite and CI (other test runs use them): the private ones are
made here, on free ports in temporary folders, from the system's binaries
(/usr/lib/postgresql/<version>/bin, /usr/bin/redis-server). PostgreSQL refuses to run as root, so
as root its commands run as the ``postgres`` user. Both are set up as compose runs them in
production: Redis with its append-only file (a restart keeps the queues), PostgreSQL stopped
with a fast shutdown (docker stops the postgres image with SIGINT).

- ``private_postgres``, ``private_redis``: the servers, one each for the folder, with
  ``stop()``, ``start()`` and ``restart(down_seconds)``.
- ``portal_database``: the portal's database on ``private_postgres``, migrated once.
- ``portal_env``: the environment of a portal process pointed at them, in development mode with
  production's persistent database connections, and tests.faults.settings, whose email backend
  writes each message into a folder (tests/faults/mailbox.py).
- ``portal_script(name, **kwargs)``: runs a function of tests/faults/scripts.py in the portal
  against them (seeding, reading rows back); returns its JSON.
- ``gunicorn_server(workers=2)``: a context manager running gunicorn; yields a ``Server``.
- ``mailbox``: this test's mailbox folder; the private Redis is emptied for each test using it.
- ``celery_worker(**options)``: starts a ``Worker`` delivering into ``mailbox`` (stopped at the
  end of the test).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from django.conf import settings

from tests.processes import free_port, http_server

SERVER_START_SECONDS = 60
SCRIPT_SECONDS = 120


def _postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    versions = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    versions.sort(key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    if versions:
        return versions[-1]
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _run(command: list[str], *, what: str, timeout: float = 60) -> str:
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


class PrivatePostgres:
    """A PostgreSQL cluster in ``folder`` on ``port``, trust authentication on loopback."""

    def __init__(self, bin_dir: Path, folder: Path, port: int):
        self.bin_dir, self.folder, self.port = bin_dir, folder, port
        self.data, self.log = folder / "data", folder / "postgres.log"
        # PostgreSQL will not run as root; as root, run its commands as the postgres user.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _command(self, name: str, *args: str) -> list[str]:
        return [*self.as_owner, str(self.bin_dir / name), *args]

    def init(self) -> None:
        if self.as_owner:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        _run(
            self._command("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                          "--locale=C", "--no-sync", "--no-instructions"),
            what="initdb",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        _run(self._command("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                           "start"), what="pg_ctl start")  # fmt: skip

    def stop(self) -> None:
        # Fast shutdown: open connections are cut and their transactions rolled back.
        _run(self._command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"),
             what="pg_ctl stop")  # fmt: skip

    def restart(self, *, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def createdb(self, name: str) -> None:
        _run([str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
             what="createdb")  # fmt: skip

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class PrivateRedis:
    """A redis-server on ``port`` with its data in ``folder``, persisted as compose's is."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
             "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        # SIGTERM, as `docker stop` sends: Redis writes its append-only file out and exits.
        self.process.terminate()
        self.process.wait(timeout=30)

    def restart(self, *, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def url(self, database: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def flushall(self) -> None:
        redis.Redis(port=self.port).flushall()

    def log_tail(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture(scope="package")
def faults_folder():
    # Not under pytest's tmp_path: that is private to root, and PostgreSQL runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="portal-faults-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def private_postgres(faults_folder, unavailable):
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        unavailable(None, "the fault tests need PostgreSQL's initdb and pg_ctl (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable(None, "the fault tests run PostgreSQL as the 'postgres' user, which does not exist")
    folder = faults_folder / "postgres"
    folder.mkdir()
    server = PrivatePostgres(bin_dir, folder, free_port())
    server.init()
    server.start()
    yield server
    with contextlib.suppress(BaseException):
        server.stop()


@pytest.fixture(scope="package")
def private_redis(faults_folder, unavailable):
    if shutil.which("redis-server") is None:
        unavailable(None, "the fault tests need redis-server (apt-get install redis-server)")
    folder = faults_folder / "redis"
    folder.mkdir()
    server = PrivateRedis(folder, free_port())
    server.start()
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


def _base_env(*, database_url: str, redis_server: PrivateRedis, var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings",
        "PORTAL_ENV": "development",
        "DEBUG": "false",
        "SECRET_KEY": "fault-tests-secret-key-not-used-anywhere-else-0123456789",
        "DATABASE_URL": database_url,
        # As in production: each process keeps its database connection between requests, which
        # a database restart leaves dead.
        "DATABASE_CONN_MAX_AGE": "60",
        "REDIS_URL": redis_server.url(0),
        "CELERY_BROKER_URL": redis_server.url(1),
        "SANDBOX_REDIS_URL": redis_server.url(2),
        "PORTAL_VAR_DIR": str(var_dir),
        "PORTAL_STORAGE_BACKEND": "local",
        "PORTAL_STORAGE_ROOT": str(var_dir / "storage"),
        "DOWNLOAD_ACCEL_REDIRECT_PREFIX": "",
        # Links good for many downloads: the clients fetch the same few files again and again.
        "DOWNLOAD_LINK_MAX_DOWNLOADS": "1000",
        "REVIEWER_NOTIFICATIONS": "immediate",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.fixture(scope="package")
def portal_database(private_postgres, private_redis, faults_folder) -> str:
    private_postgres.createdb("portal")
    url = private_postgres.url("portal")
    env = _base_env(database_url=url, redis_server=private_redis, var_dir=faults_folder / "var")
    _run_in_portal([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, what="migrate")
    return url


def _run_in_portal(command: list[str], *, env: dict, what: str) -> str:
    result = subprocess.run(
        command, check=False, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=SCRIPT_SECONDS
    )
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result.stdout


@pytest.fixture(scope="package")
def portal_env(portal_database, private_redis, faults_folder) -> dict[str, str]:
    """The environment of a portal process pointed at the private servers."""
    return _base_env(database_url=portal_database, redis_server=private_redis, var_dir=faults_folder / "var")


@pytest.fixture
def mailbox(private_redis, tmp_path) -> Path:
    """This test's mailbox, where the workers it starts deliver; the private Redis starts the test
    empty (no task, cache entry or stream left by an earlier one)."""
    private_redis.flushall()
    folder = tmp_path / "mailbox"
    folder.mkdir()
    return folder


@pytest.fixture(scope="package")
def portal_script(portal_env):
    """portal_script(name, **kwargs): tests/faults/scripts.py's function ``name`` run in the portal
    against the private servers; returns what it returned."""

    def run(name: str, **kwargs) -> dict:
        output = _run_in_portal(
            [sys.executable, "-m", "tests.faults.scripts", name, json.dumps(kwargs)], env=portal_env, what=name
        )
        line = next(line for line in reversed(output.splitlines()) if line.startswith("RESULT "))
        return json.loads(line.removeprefix("RESULT "))

    return run


@dataclass
class Server:
    port: int
    log_tail: object  # () -> str

    def processes(self) -> tuple[int, list[int]]:
        """gunicorn's master and its workers' pids: a worker that crashed or was killed for its
        timeout comes back under another pid."""
        listening = f"127.0.0.1:{self.port}"
        master = next(child for child in psutil.Process().children() if listening in " ".join(child.cmdline()))
        return master.pid, sorted(worker.pid for worker in master.children())


@pytest.fixture(scope="package")
def gunicorn_server(portal_env):
    """gunicorn_server(workers=2): a context manager running gunicorn with sync workers, as
    compose's web service does; yields a Server."""

    @contextlib.contextmanager
    def start(*, workers: int = 2):
        port = free_port()
        command = [
            sys.executable, "-m", "gunicorn", "portal.wsgi:application", "-b", f"127.0.0.1:{port}",
            "--workers", str(workers), "--timeout", "60", "--log-level", "info",
        ]  # fmt: skip
        with http_server("gunicorn", command, port=port, env=portal_env, start_seconds=SERVER_START_SECONDS) as tail:
            yield Server(port=port, log_tail=tail)

    return start


class Worker:
    """A `celery worker -Q celery` process, as compose's worker service runs it (prefork pool)."""

    def __init__(self, env: dict, log_path: Path, concurrency: int):
        self.env, self.log_path, self.concurrency = env, log_path, concurrency
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "celery",
            "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--hostname", f"faults-{free_port()}@%h",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            # A session of its own, so kill() takes the pool processes with it, as a container's end does.
            self.process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + SERVER_START_SECONDS
        while "ready." not in self.log():
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the worker was not ready in {SERVER_START_SECONDS} s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else "(no worker log)"

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes at once: nothing is acknowledged or given back."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # pool processes left behind, if any


@pytest.fixture
def celery_worker(portal_env, mailbox, tmp_path):
    """celery_worker(concurrency=2, **extra_env): a started Worker delivering into ``mailbox``;
    all are stopped after the test."""
    started: list[Worker] = []

    def start(*, concurrency: int = 2, **extra_env: str) -> Worker:
        env = {**portal_env, "EMAIL_FILE_PATH": str(mailbox), **extra_env}
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log", concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
