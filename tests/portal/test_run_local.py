"""`make run` (the `run_local` command): the web server, the Celery worker with the scheduler, and
a sandbox worker, started together on the embedded defaults and stopped together."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from django.conf import settings

from portal.management.commands.run_local import child_commands
from tests.processes import free_port

START_SECONDS = 120
STOP_SECONDS = 30


def _queues(command: list[str]) -> list[str]:
    return command[command.index("-Q") + 1].split(",")


def test_worker_takes_every_queue_but_the_sandbox_and_runs_the_scheduler():
    worker = child_commands(python="python", host="127.0.0.1", port="8000")["Celery worker"]
    assert worker[:6] == ["python", "-m", "celery", "-A", "portal", "worker"]
    assert _queues(worker) == ["celery"]
    assert "--beat" in worker
    assert worker[worker.index("--schedule") + 1] == settings.CELERY_BEAT_SCHEDULE_FILENAME


def test_sandbox_worker_takes_the_sandbox_queue_in_threads(settings):
    settings.SANDBOX_QUEUE = "sandbox-elsewhere"
    sandbox = child_commands(python="python", host="127.0.0.1", port="8000")["sandbox worker"]
    assert sandbox[:6] == ["python", "-m", "celery", "-A", "portal", "worker"]
    assert _queues(sandbox) == ["sandbox-elsewhere"]
    assert sandbox[sandbox.index("--pool") + 1] == "threads"
    assert sandbox[sandbox.index("--hostname") + 1] == "sandbox@%h"
    assert "--beat" not in sandbox  # one scheduler: the other worker's


def test_web_server_listens_where_asked():
    web = child_commands(python="python", host="0.0.0.0", port="8123")["web server"]
    assert web == ["python", "manage.py", "runserver", "0.0.0.0:8123"]


# --- The real thing ---------------------------------------------------------------------------


def _embedded_env(var_dir: Path) -> dict[str, str]:
    # The embedded defaults, as on a fresh checkout: none of this test run's own services (CI
    # points DATABASE_URL, REDIS_URL and CELERY_BROKER_URL at PostgreSQL and Redis).
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**keep, "PORTAL_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


_GRANT = """
from django.contrib.auth import get_user_model
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.services import grant_accept_license, grant_create
User = get_user_model()
researcher = User.objects.get(email="researcher@example.org")
variant = ModelVariant.objects.get(slug="llama-demo-tiny")
grant = grant_create(user=researcher, variant=variant, actor=User.objects.get(email="reviewer@example.org"),
                     reason="Trying the sandbox.")
grant_accept_license(grant=grant, user=researcher, license_version=license_current(variant.family))
"""


def _password_reset_request(base: str, email: str) -> None:
    """The "Forgot your password?" form, as a browser fills it in (CSRF cookie and token)."""
    import http.cookiejar
    import urllib.parse

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/accounts/password/reset/", timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "email": email}).encode()
    with opener.open(f"{base}/accounts/password/reset/", data=data, timeout=10) as response:
        assert response.status == 200


def _children(pid: int) -> dict[int, list[str]]:
    """A process's children and their command lines, from /proc."""
    children = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                raw = (status.parent / "cmdline").read_bytes()
                children[int(status.parent.name)] = [arg.decode() for arg in raw.split(b"\0") if arg]
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.real_worker
def test_make_run_serves_the_site_and_the_sandbox_then_stops_everything(tmp_path):
    env = _embedded_env(tmp_path / "var")
    _manage(env, "migrate", "--noinput")
    port = free_port()
    log_path = tmp_path / "run_local.log"
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "manage.py", "run_local", "--port", str(port)], cwd=settings.BASE_DIR,
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    children: dict[int, list[str]] = {}
    try:
        deadline = time.monotonic() + START_SECONDS
        while "Portal running at" not in log_path.read_text(errors="replace"):
            assert run.poll() is None, f"run_local exited with {run.returncode}:\n{log_tail()}"
            assert time.monotonic() < deadline, f"no banner in {START_SECONDS} s:\n{log_tail()}"
            time.sleep(0.5)
        banner = log_tail()
        assert f"Sandbox: http://127.0.0.1:{port}/sandbox/" in banner
        assert f"OpenAI base URL: http://127.0.0.1:{port}/v1" in banner

        children = _children(run.pid)
        celery = [command for command in children.values() if "celery" in command]
        assert sorted(_queues(command)[0] for command in celery) == ["celery", "sandbox"], children
        assert any(command[-2:] == ["runserver", f"127.0.0.1:{port}"] for command in children.values()), children

        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:  # noqa: S310 (loopback)
            assert json.load(response)["status"] == "ok"
        assert f"their links point to {base}/ (PORTAL_BASE_URL)" in banner

        # An email sent while it runs links to the port it serves on, not to the default 8000.
        _password_reset_request(base, "researcher@example.org")
        deadline = time.monotonic() + 30
        while "/accounts/password/reset/key/" not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"no password reset email printed:\n{log_tail()}"
            time.sleep(0.5)
        assert f"{base}/accounts/password/reset/key/" in log_tail()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/v1/models", timeout=10)  # noqa: S310 (loopback)
        assert refused.value.code == 401

        # A completion goes through the broker to the sandbox worker and back.
        _manage(env, "shell", "-c", _GRANT)
        token = _manage(env, "portal_token", "create", "researcher@example.org").strip().splitlines()[-1]
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=90)
        assert [model.id for model in client.models.list()] == ["llama-demo-tiny"]
        completion = client.completions.create(model="llama-demo-tiny", prompt="Once upon", max_tokens=4)
        assert completion.usage.completion_tokens == 4
        assert "Task inference.sandbox_job_run" in log_tail()
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGTERM)
        try:
            returncode = run.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            for pid in [*children, run.pid]:  # each runs in a session of its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            run.wait()
            pytest.fail(f"run_local did not stop in {STOP_SECONDS} s after SIGTERM:\n{log_tail()}")
    assert returncode == 0, log_tail()
    left = [children[pid] for pid in children if _alive(pid)]
    assert not left, f"still running after run_local stopped: {left}"
