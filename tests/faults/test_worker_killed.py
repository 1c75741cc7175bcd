"""Celery workers killed (SIGKILL) while notification emails are queued: every email still
arrives, at least once.

First the whole worker dies mid-send, as a killed container does: what it had taken stays
unacknowledged in Redis and goes to the next worker once the visibility timeout
(CELERY_VISIBILITY_TIMEOUT, 3 s here instead of 15 minutes) has passed. Then one pool process of
that next worker dies mid-send, as one the OOM killer picks: its task goes back to the queue
(CELERY_TASK_REJECT_ON_WORKER_LOST) and the same worker runs it again; it used to be acknowledged
as failed, and its emails were lost.

At least once, not exactly once: a task killed between its two emails sends the first again
when it runs again. For notification mail a duplicate is a nuisance; a missing "request
received" or "new request to review" is a researcher left without news, or a request no
reviewer hears of.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import uuid
from collections import Counter

import pytest

from tests.faults.mailbox import mailbox_read

APPLICANTS = 8
SEND_SECONDS = "0.4"  # each email takes this long to send, so a kill lands mid-send
VISIBILITY_TIMEOUT_SECONDS = 3
DELIVERY_SECONDS = 40


def _wait(condition, *, seconds: float, what: str, log):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen in {seconds} s:\n{log()}")
        time.sleep(0.05)
    return found


def _sending(mailbox) -> tuple[int, str] | None:
    """A pool process sending an email now, and the email's subject."""
    for marker in (mailbox / "sending").glob("*"):
        try:
            return int(marker.name), marker.read_text()
        except FileNotFoundError:  # sent meanwhile
            continue
    return None


def _delivered(mailbox, references: list[str], reviewer: str) -> Counter:
    """How often each email arrived: (reference, "received", applicant) and (reference, "new request")."""
    counts: Counter = Counter()
    for message in mailbox_read(mailbox):
        for reference in references:
            if f"Request {reference} received" in message["subject"]:
                counts[(reference, "received", *message["to"])] += 1
            if f"request {reference} from" in message["subject"] and reviewer in message["bcc"]:
                counts[(reference, "new request")] += 1
    return counts


def test_every_queued_email_arrives_when_workers_are_killed(portal_script, celery_worker, mailbox):
    prefix = f"killed-{uuid.uuid4().hex[:8]}"
    reviewer = f"{prefix}.reviewer@uni.example.org"
    portal_script("seed_applicants", count=APPLICANTS, prefix=prefix)
    # Applied while no worker runs: each "request received" task waits in the queue.
    references = portal_script("submit_requests", prefix=prefix)["references"]
    assert len(references) == APPLICANTS
    slow_mail = {
        "FAULTS_EMAIL_SEND_SECONDS": SEND_SECONDS,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_SECONDS),
    }

    # The whole worker, mid-send.
    first = celery_worker(concurrency=2, **slow_mail)
    _wait(lambda: _sending(mailbox), seconds=30, what="an email being sent", log=first.log)
    first.kill()
    killed_at = time.monotonic()
    shutil.rmtree(mailbox / "sending")  # the killed processes' marks

    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT_SECONDS - time.monotonic()))
    second = celery_worker(concurrency=2, **slow_mail)

    # One of its pool processes, mid-send; the same worker sends that task's emails again.
    pool_process, subject = _wait(lambda: _sending(mailbox), seconds=30, what="an email being sent", log=second.log)
    os.kill(pool_process, signal.SIGKILL)
    reference = re.search(r"[Rr]equest (\S+) ", subject)[1]

    def both_emails_of_the_killed_task() -> bool:
        kinds = {key[:2] for key in _delivered(mailbox, [reference], reviewer)}
        return kinds == {(reference, "received"), (reference, "new request")}

    _wait(both_emails_of_the_killed_task, seconds=DELIVERY_SECONDS, what=f"the emails of {reference}", log=second.log)

    def all_delivered() -> Counter | None:
        counts = _delivered(mailbox, references, reviewer)
        return counts if len(counts) == 2 * APPLICANTS else None

    counts = _wait(all_delivered, seconds=DELIVERY_SECONDS, what="every email", log=second.log)
    applicants = {key[2] for key in counts if key[1] == "received"}
    assert applicants == {f"{prefix}.{number}@uni.example.org" for number in range(APPLICANTS)}
    # At least once. A copy more only of an email a killed task had sent before it died, its first
    # of two: one at most per kill.
    assert sum(count - 1 for count in counts.values()) <= 2, counts
