"""`make run`: the web server and a real Celery worker, side by side, until Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the portal locally: Django's web server plus a Celery worker process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))

    def handle(self, *args, host, port, **options):
        python = sys.executable
        worker = subprocess.Popen(
            [python, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "2",
             "--hostname", "local@%h", "--beat", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME],
            start_new_session=True,
        )  # fmt: skip
        web = subprocess.Popen([python, "manage.py", "runserver", f"{host}:{port}"], start_new_session=True)
        url = f"http://{host}:{port}/"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Portal running at {url}  (health: {url}healthz, API docs: {url}api/docs/)"))
        call_command("seed_demo", stdout=self.stdout)
        self.stdout.write(f"Broker: {settings.CELERY_BROKER_URL}  Database: {settings.DATABASES['default']['ENGINE']}")
        self.stdout.write("Emails (sign-up verification, password reset) are printed in this terminal. Ctrl-C stops.\n")
        children = [web, worker]
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
        failed = [child for child in children if child.returncode not in (0, -signal.SIGTERM, None)]
        if failed:
            raise SystemExit(1)
