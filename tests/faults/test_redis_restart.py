"""Redis (the broker and the cache) restarts while researchers apply for access.

Each application commits, then hands its "request received" task to the broker. While Redis is
down the hand-off waits for it (CELERY_PUBLISH_RETRY_SECONDS) instead of failing the request
after its commit, which used to answer 500 and lose the email. The pages keep answering, and
logging in works, with the cache down (portal.cache). After Redis is back, every email arrives
and every application is in the audit log.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest
import requests

from tests.access.conftest import APPLICATION_FIELDS
from tests.faults.clients import REQUEST_TIMEOUT_SECONDS, ClientLoop, Outcome, request
from tests.faults.mailbox import mailbox_read
from tests.faults.scripts import PASSWORD

APPLICANTS = 8
OUTAGE_SECONDS = 3
DELIVERY_SECONDS = 30


@pytest.fixture(scope="module")
def applicants(portal_script) -> dict:
    prefix = f"redis-{uuid.uuid4().hex[:8]}"
    return {"prefix": prefix, **portal_script("seed_applicants", count=APPLICANTS, prefix=prefix)}


@pytest.fixture(scope="module")
def web(gunicorn_server):
    with gunicorn_server(workers=2) as server:
        yield server


def _apply(port: int, applicant: dict, license_id: int) -> Outcome:
    body = json.dumps({**APPLICATION_FIELDS, "variants": ["llama-7b"], "license_id": license_id}).encode()
    return request(
        port, "POST", "/api/v1/access-requests", what="apply", user_agent=f"apply/{applicant['email']}", body=body,
        headers={"Authorization": f"Bearer {applicant['token']}", "Content-Type": "application/json"},
    )  # fmt: skip


def _log_in(port: int, email: str) -> Outcome:
    """allauth's login form, as a browser fills it in: the page, then the POST with its CSRF token."""
    outcome = Outcome(what="log in", user_agent=email, started=time.monotonic())
    browser = requests.Session()
    try:
        page = browser.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=REQUEST_TIMEOUT_SECONDS)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or token is None:
            outcome.status, outcome.body = page.status_code, page.content
            return outcome
        answer = browser.post(
            f"http://127.0.0.1:{port}/accounts/login/",
            data={"login": email, "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        outcome.status, outcome.body = answer.status_code, answer.content
        # Logged in: the redirect, and a session that opens the requests page.
        if answer.status_code == 302:
            mine = browser.get(
                f"http://127.0.0.1:{port}/requests/", allow_redirects=False, timeout=REQUEST_TIMEOUT_SECONDS
            )
            outcome.status = 302 if mine.status_code == 200 else mine.status_code
    except requests.RequestException as exc:
        outcome.error = repr(exc)
    finally:
        outcome.ended = time.monotonic()
    return outcome


def _pages(port: int, number: int) -> list[Outcome]:
    return [
        request(port, "GET", path, what=f"page {path}", user_agent=f"pages/{number}")
        for path in ("/", "/models/llama-7b/", "/accounts/login/")
    ]


def _delivered(mailbox, references: dict[str, str], reviewer: str) -> dict[str, list[str]]:
    """Per reference, the emails that arrived about it: "received" (to its applicant) and
    "new request" (to the reviewer, in Bcc)."""
    found: dict[str, list[str]] = {reference: [] for reference in references}
    for message in mailbox_read(mailbox):
        for reference, applicant in references.items():
            if f"Request {reference} received" in message["subject"] and message["to"] == [applicant]:
                found[reference].append("received")
            if f"request {reference} from" in message["subject"] and reviewer in message["bcc"]:
                found[reference].append("new request")
    return found


def test_no_email_or_audit_row_is_lost_and_pages_answer_across_a_redis_restart(
    private_redis, web, applicants, celery_worker, mailbox, portal_script
):
    worker = celery_worker()
    processes = web.processes()
    people = applicants["applicants"]
    outage: dict[str, float] = {}

    def restart():
        outage["down"] = time.monotonic()
        private_redis.stop()
        time.sleep(OUTAGE_SECONDS)
        private_redis.start()
        outage["up"] = time.monotonic()

    with ClientLoop(lambda number: _pages(web.port, number)) as pages:
        applied = [_apply(web.port, applicant, applicants["license_id"]) for applicant in people[:2]]
        restarting = threading.Thread(target=restart)
        restarting.start()
        time.sleep(0.3)
        logins = [_log_in(web.port, people[0]["email"])]
        for applicant in people[2:]:
            applied.append(_apply(web.port, applicant, applicants["license_id"]))
            time.sleep(OUTAGE_SECONDS / APPLICANTS)
        restarting.join()
        logins.append(_log_in(web.port, people[1]["email"]))

    report = "\n".join(outcome.describe() for outcome in [*applied, *logins])
    assert any(outage["down"] < outcome.started < outage["up"] for outcome in applied), "none applied during: " + report
    # Every application was accepted: none failed after its commit, so none is lost to its applicant.
    assert [outcome.status for outcome in applied] == [201] * APPLICANTS, report
    assert [outcome.status for outcome in logins] == [302, 302], report
    # The site answered throughout, within the client's timeout.
    during = [outcome for outcome in pages.outcomes if outage["down"] < outcome.started < outage["up"]]
    assert during, "no page was asked for during the outage"
    assert all(outcome.status == 200 for outcome in pages.outcomes), "\n".join(
        outcome.describe() for outcome in pages.outcomes if outcome.status != 200
    )

    references = {
        json.loads(outcome.body)["reference"]: outcome.user_agent.removeprefix("apply/") for outcome in applied
    }
    reviewer = f"{applicants['prefix']}.reviewer@uni.example.org"
    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        delivered = _delivered(mailbox, references, reviewer)
        if all(sorted(set(kinds)) == ["new request", "received"] for kinds in delivered.values()):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"emails missing after {DELIVERY_SECONDS} s: {delivered}")
        time.sleep(0.2)
    # Exactly once here: Redis stopped cleanly and no task was running when it went.
    assert all(sorted(kinds) == ["new request", "received"] for kinds in delivered.values()), delivered

    # Nothing was restarted to get there: the same web workers, the same Celery worker.
    assert web.processes() == processes
    assert worker.process.poll() is None

    stored = portal_script("access_requests", prefix=applicants["prefix"])["requests"]
    assert set(stored) == set(references)
    assert all("access_request.submitted" in row["audited"] for row in stored.values()), stored
