"""PostgreSQL restarts while researchers download weights and call the API.

The same gunicorn serves before, during and after (no worker of it is replaced); during the
outage every request ends within the client's timeout, refused with a 503 a download tool
retries (or with no connection); and every byte the gateway counted reached its client, and
every file a client received whole was counted, once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.faults.clients import REQUEST_TIMEOUT_SECONDS, ClientLoop, request

OUTAGE_SECONDS = 3


@pytest.fixture(scope="module")
def downloads(portal_script, faults_folder) -> dict:
    """The demo weights, a researcher's active grant and one bundle of its links (good for 1,000
    downloads each, see portal_env), and the researcher's API token."""
    return portal_script(
        "seed_downloads", weights_folder=str(faults_folder / "demo-weights"), prefix=f"downloads-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="module")
def web(gunicorn_server):
    """One gunicorn for the module, with two sync workers."""
    with gunicorn_server(workers=2) as server:
        yield server


def _requests(port: int, downloads: dict, number: int, *, tag: str):
    """A download (the links in turn) and an API call, each with a User-Agent of its own."""
    links = downloads["links"]
    link = links[number % len(links)]
    yield request(port, "GET", link["path"], what=f"download {link['name']}", user_agent=f"{tag}-dl/{number}",
                  expect_file=link)  # fmt: skip
    yield request(port, "GET", "/api/v1/grants", what="api", user_agent=f"{tag}-api/{number}",
                  headers={"Authorization": f"Bearer {downloads['token']}"})  # fmt: skip


def _assert_counted_exactly_what_was_received(portal_script, downloads: dict, outcomes) -> None:
    events = portal_script("download_events", grant_id=downloads["grant_id"])["events"]
    sent = {outcome.user_agent: outcome for outcome in outcomes if outcome.what.startswith("download")}
    counted = [event for event in events if event["counted"] and event["user_agent"] in sent]
    # Counted: its bytes reached the client that asked (the whole file, or what was sent of it).
    for event in counted:
        client = sent[event["user_agent"]]
        assert client.status == 200 and event["bytes_sent"] == client.received, (event, client.describe())
    # Received whole: counted, once.
    counted_per_request = Counter(event["user_agent"] for event in counted)
    for outcome in sent.values():
        if outcome.complete:
            assert counted_per_request[outcome.user_agent] == 1, outcome.describe()
    assert max(counted_per_request.values()) == 1
    # Nothing counted for a request that the outage refused.
    refused = {outcome.user_agent for outcome in sent.values() if outcome.status != 200}
    assert not refused & set(counted_per_request)


def test_downloads_and_api_calls_survive_a_postgresql_restart(private_postgres, web, downloads, portal_script):
    processes = web.processes()
    with ClientLoop(lambda number: list(_requests(web.port, downloads, number, tag="restart"))) as clients:
        clients.wait_for(6, after=0, seconds=30)
        down = time.monotonic()
        private_postgres.stop()
        time.sleep(OUTAGE_SECONDS)
        private_postgres.start()
        up = time.monotonic()
        clients.wait_for(10, after=up, seconds=30)

    outcomes = list(clients.outcomes)
    report = "\n".join(outcome.describe() for outcome in outcomes)
    before = [outcome for outcome in outcomes if outcome.ended < down]
    during = [outcome for outcome in outcomes if outcome.started > down and outcome.ended < up]
    after = [outcome for outcome in outcomes if outcome.started > up]
    assert before and during and after, report
    assert all(outcome.ok for outcome in before), report
    # No hang: each request ended well within the client's timeout, answered or refused.
    assert max(outcome.ended - outcome.started for outcome in outcomes) < REQUEST_TIMEOUT_SECONDS - 2, report
    # Refused as unavailable (503 with Retry-After, which download tools retry), never a 500.
    assert all(outcome.ok or outcome.failed_cleanly for outcome in during), report
    assert any(not outcome.ok for outcome in during), "the outage went unnoticed: " + report
    # Back without a restart of the portal: every request once the database is up goes through,
    # served by the same gunicorn workers.
    assert all(outcome.ok for outcome in after), report
    assert web.processes() == processes, web.log_tail()

    _assert_counted_exactly_what_was_received(portal_script, downloads, outcomes)


def test_idle_processes_reconnect_after_a_postgresql_restart(private_postgres, web, downloads):
    """Each gunicorn worker keeps its database connection between requests (production's
    DATABASE_CONN_MAX_AGE); one that served nobody during the outage still holds the dead one
    afterwards. Its next request must not be the one that finds out."""
    warm = [outcome for number in range(6) for outcome in _requests(web.port, downloads, number, tag="idle")]
    assert all(outcome.ok for outcome in warm), [outcome.describe() for outcome in warm if not outcome.ok]
    private_postgres.restart(down_seconds=0.5)
    after = [outcome for number in range(6, 12) for outcome in _requests(web.port, downloads, number, tag="idle")]
    assert all(outcome.ok for outcome in after), [outcome.describe() for outcome in after if not outcome.ok]
