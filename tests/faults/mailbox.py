"""Email delivery for the fault tests: each message becomes one JSON file in EMAIL_FILE_PATH, with
its recipients (Bcc too, which Django's file backend leaves out), its subject and the process
that sent it. With FAULTS_EMAIL_SEND_SECONDS set, each send takes that long, as a slow mail server
would, and ``sending/<pid>`` says which process is sending meanwhile (a test kills it there)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend


def mailbox_read(folder: Path) -> list[dict]:
    """Every message delivered into ``folder`` so far."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]


class RecordingEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        folder = Path(settings.EMAIL_FILE_PATH)
        send_seconds = float(os.environ.get("FAULTS_EMAIL_SEND_SECONDS", "0"))
        for message in email_messages:
            sending = folder / "sending" / str(os.getpid())
            if send_seconds:
                sending.parent.mkdir(parents=True, exist_ok=True)
                sending.write_text(message.subject)
                time.sleep(send_seconds)
            record = {
                "to": list(message.to),
                "bcc": list(message.bcc),
                "subject": message.subject,
                "pid": os.getpid(),
            }
            name = uuid.uuid4().hex
            # Written under another name, then renamed: a reader never sees half a message.
            partial = folder / f".{name}.partial"
            partial.write_text(json.dumps(record))
            partial.rename(folder / f"{name}.json")
            sending.unlink(missing_ok=True)
        return len(email_messages)
