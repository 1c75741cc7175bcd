"""`make run`: the web server and a real Celery worker, side by side, until Ctrl-C."""

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


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the portal locally: Django's web server plus a Celery worker process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))

    def handle(self, *args, host, port, **options):
        python = sys.executable
        accounts = io.StringIO()
        call_command("seed_demo", stdout=accounts)
        demo_weights = self._demo_weights_publish()
        # The children run in their own sessions (so Ctrl-C reaches only us and we stop
        # them in order); a SIGTERM or SIGHUP to us must stop them too.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_keyboard_interrupt)
        worker = subprocess.Popen(
            [python, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "2",
             "--hostname", "local@%h", "--beat", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
            start_new_session=True,
        )  # fmt: skip
        web = subprocess.Popen([python, "manage.py", "runserver", f"{host}:{port}"], start_new_session=True)
        url = f"http://{host}:{port}/"
        children = [web, worker]
        # Print the banner once the site answers, so it is not buried in start-up logs.
        try:
            healthy = self._wait_until_up(f"{url}healthz", children)
        except KeyboardInterrupt:
            healthy = False
        if web.poll() is not None or worker.poll() is not None:
            self._stop(children)
            name = "web server" if web.poll() is not None else "Celery worker"
            raise CommandError(
                f"The {name} exited during start-up (see its messages above). "
                f"If port {port} is taken, run `PORT=8001 make run`."
            )
        banner = [
            "",
            "=" * 78,
            f"Portal running at {url}" if healthy else f"Portal starting at {url} (not healthy yet: see {url}healthz)",
            f"  health: {url}healthz   API docs: {url}api/docs/   admin: {url}admin/",
            accounts.getvalue().rstrip(),
            demo_weights,
            f"Broker: {settings.CELERY_BROKER_URL}   Database: {settings.DATABASES['default']['ENGINE']}",
            "Emails (sign-up verification, password reset) are printed in this terminal. Ctrl-C stops.",
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
        failed = [child for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
        if failed:
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
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
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
