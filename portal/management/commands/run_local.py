"""`make run`: the web server, a real Celery worker and a sandbox worker, side by side, until Ctrl-C."""

import io
import os
import signal
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

# How long the children get to stop (Celery's warm shutdown takes a few seconds) before they are killed.
STOP_SECONDS = 20


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def child_commands(*, python: str, host: str, port: str) -> dict[str, list[str]]:
    """The processes `make run` starts, by the name its messages use: Django's development server
    (it serves /v1/ too, streams included), the Celery worker for every task but the sandbox's, with
    the scheduler embedded, and a sandbox worker (threads: one per job, beside the batcher thread
    that runs them together on the device)."""
    return {
        "web server": [python, "manage.py", "runserver", f"{host}:{port}"],
        "Celery worker": [
            python, "-m", "celery", "-A", "portal", "worker", "-Q", "celery", "--loglevel", "INFO",
            "--concurrency", "2", "--hostname", "local@%h",
            "--beat", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME,
        ],
        "sandbox worker": [
            python, "-m", "celery", "-A", "portal", "worker", "-Q", settings.SANDBOX_QUEUE, "--pool", "threads",
            "--concurrency", "8", "--hostname", "sandbox@%h", "--loglevel", "INFO",
        ],
    }  # fmt: skip


def local_base_url(*, host: str, port: str, environ=os.environ) -> str:
    """The URL emails link to while `make run` runs: PORTAL_BASE_URL when it is set (an operator's
    choice, e.g. a tunnel or proxy in front), else the address the web server listens on, so a
    `PORT=8001 make run` sends links to port 8001, not to the default 8000."""
    if environ.get("PORTAL_BASE_URL"):
        return environ["PORTAL_BASE_URL"]
    # A wildcard listen address is not one a browser can open.
    browsable = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    if ":" in browsable and not browsable.startswith("["):
        browsable = f"[{browsable}]"
    return f"http://{browsable}:{port}"


class Command(BaseCommand):
    help = "Run the portal locally: Django's web server, a Celery worker and a sandbox worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))

    def handle(self, *args, host, port, **options):
        python = sys.executable
        # The children (web server, workers) read it from the environment they inherit: the links in
        # every email they send point at the port this command serves on.
        base_url = local_base_url(host=host, port=port)
        os.environ["PORTAL_BASE_URL"] = base_url
        settings.PORTAL_BASE_URL = base_url
        accounts = io.StringIO()
        call_command("seed_demo", stdout=accounts)
        demo_weights = self._demo_weights_publish()
        # The children run in their own sessions (so Ctrl-C reaches only us and we stop
        # them in order); a SIGTERM or SIGHUP to us must stop them too.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_keyboard_interrupt)
        # Workers first, so they are listening by the time the site answers.
        commands = child_commands(python=python, host=host, port=port)
        started = {}
        try:
            for name in ("Celery worker", "sandbox worker", "web server"):
                started[name] = subprocess.Popen(commands[name], start_new_session=True)
        except BaseException:  # a signal between two starts: the ones started must not outlive us
            self._stop(list(started.values()))
            raise
        children = list(started.values())
        url = f"http://{host}:{port}/"
        # Print the banner once the site answers, so it is not buried in start-up logs.
        try:
            healthy = self._wait_until_up(f"{url}healthz", children)
        except KeyboardInterrupt:
            healthy = False
        exited = [name for name, child in started.items() if child.poll() is not None]
        if exited:
            self._stop(children)
            hint = f" If port {port} is taken, run `PORT=8001 make run`." if "web server" in exited else ""
            raise CommandError(f"The {exited[0]} exited during start-up (see its messages above).{hint}")
        banner = [
            "",
            "=" * 78,
            f"Portal running at {url}" if healthy else f"Portal starting at {url} (not healthy yet: see {url}healthz)",
            f"  health: {url}healthz   API docs: {url}api/docs/   admin: {url}admin/",
            f"Sandbox: {url}sandbox/   OpenAI base URL: {url}v1 (a personal API token as the api_key)",
            accounts.getvalue().rstrip(),
            demo_weights,
            f"Broker: {settings.CELERY_BROKER_URL}   Database: {settings.DATABASES['default']['ENGINE']}",
            (
                f"Sandbox queue: {settings.SANDBOX_QUEUE}   transport: {settings.SANDBOX_TRANSPORT}   "
                f"device: {settings.SANDBOX_DEVICE or 'CUDA if present, else CPU'}"
            ),
            "Emails (sign-up verification, password reset) are printed in this terminal; their links "
            f"point to {base_url.rstrip('/')}/ (PORTAL_BASE_URL). Ctrl-C stops.",
            "=" * 78,
            "",
        ]
        self.stdout.write("\n".join(banner))
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)
        failed = [name for name, child in started.items() if child.returncode not in (0, -signal.SIGTERM, None)]
        if failed:
            codes = ", ".join(f"{name} {started[name].returncode}" for name in failed)
            self.stderr.write(f"Exit codes: {codes} (a negative code is the signal that ended it).")
            raise SystemExit(1)

    @staticmethod
    def _demo_weights_publish() -> str:
        """Generate and publish the llama-demo-tiny checkpoint (idempotent); one line for the banner."""
        from access.distribution.publishing import WeightsPublishError, demo_weights_publish
        from access.distribution.storage import StorageError
        from inference.llama.errors import CheckpointError

        folder = settings.VAR_DIR / "demo-weights" / "llama-demo-tiny"
        try:
            result = demo_weights_publish(folder=folder)
        except (WeightsPublishError, StorageError, CheckpointError, OSError) as exc:
            # The portal is still worth starting: only the demo download is missing.
            return f"Demo weights NOT published ({exc}); downloads of llama-demo-tiny will find no files."
        return (
            f"Demo weights: {result.variant.slug} from {folder} in {result.storage} storage "
            f"({len(result.files)} files, {result.uploaded} uploaded, {result.unchanged} unchanged)"
        )

    @staticmethod
    def _stop(children) -> None:
        # SIGTERM to each child alone: a Celery worker then stops its own pool and beat processes
        # (signalled as a group, they died under it and its shutdown could hang), and runserver's
        # reloader stops the server it runs. A child's whole group is killed only when it is late.
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    @staticmethod
    def _wait_until_up(url: str, children, seconds: float = 60) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and all(child.poll() is None for child in children):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own loopback URL)
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        return False
