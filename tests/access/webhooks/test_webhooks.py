"""Webhooks against a real HTTP receiver on loopback: one signed message per subscribed endpoint,
made in the transaction of its change; signatures that verify with the README's check and with
Standard Webhooks' own library; loopback and private addresses refused unless an admin allows
them; and, with a real Celery worker, a receiver that fails twice gets retries with growing
delays, then the message, all visible in the admin's delivery log, where it can be redelivered."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import standardwebhooks
from django.conf import settings
from django.db import transaction
from kombu import Exchange, Queue

from access.grants.services import grant_revoke, grant_suspend
from access.webhooks.admin import WebhookEndpointForm
from access.webhooks.delivery import address_allowed
from access.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent
from access.webhooks.services import webhook_attempt
from portal.celery import app as celery_app
from tests.processes import subprocess_database_url


class Receiver:
    """An HTTP server on loopback that records each POST and answers the given statuses in turn,
    then 200."""

    def __init__(self, answers: list[int] | None = None):
        self.answers = list(answers or [])
        self.received: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"receiver down for maintenance")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/portal"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} deliveries arrived"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answers: list[int] | None = None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _readme_verify():
    """The signature check exactly as README.md gives it."""
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    block = re.search(r"<!-- webhook-verify:[^>]*-->\n```python\n(.*?)```", readme, re.S)
    assert block, "README.md lost its webhook signature check"
    scope: dict = {}
    exec(block.group(1), scope)  # noqa: S102 (our own README's code, which is what is under test)
    return scope["webhook_verify"]


@pytest.fixture
def grant(llama_catalog, researcher, reviewer, active_grant_make):
    from access.catalog.models import ModelVariant

    return active_grant_make(user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), reviewer=reviewer)


def test_an_event_makes_one_message_per_subscribed_active_endpoint(grant, reviewer, django_capture_on_commit_callbacks):
    wanted = WebhookEndpoint.objects.create(
        url="https://hooks.lab.example/portal", events=["grant.revoked", "grant.suspended"]
    )
    WebhookEndpoint.objects.create(url="https://crm.lab.example/in", events=["request.submitted"])
    WebhookEndpoint.objects.create(url="https://old.lab.example/in", is_active=False)

    # A change rolled back sends nothing.
    with pytest.raises(RuntimeError), transaction.atomic():
        grant_suspend(grant=grant, actor=reviewer, reason="Checking.")
        raise RuntimeError("rolled back")
    assert not WebhookDelivery.objects.exists()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")

    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint == wanted and delivery.event_type == WebhookEvent.GRANT_REVOKED
    assert delivery.status == DeliveryStatus.PENDING and delivery.message_id.startswith("msg_")
    body = json.loads(delivery.body)
    assert body["type"] == "grant.revoked"
    assert body["data"]["grant"] == {
        "id": grant.pk, "user": "ada@uni.example.edu", "variant": "llama-7b", "status": "revoked",
        "request": None, "expires_at": None,
    }  # fmt: skip
    assert body["data"]["actor"] == reviewer.email and "Shared the weights." in json.dumps(body["data"]["details"])
    # Queued for the worker once the change commits (beside the holder's email).
    assert [cb for cb in queued if cb.__qualname__.startswith("webhook_messages_record")]



def test_a_delivery_verifies_with_the_readmes_check_and_standard_webhooks(grant, reviewer, receiver):
    server = receiver()
    endpoint = WebhookEndpoint.objects.create(url=server.url, allow_private_network=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")
    delivery = WebhookDelivery.objects.get(event_type="grant.suspended")

    delivered = webhook_attempt(delivery.pk)

    assert delivered.status == DeliveryStatus.DELIVERED and delivered.last_status_code == 200
    [(_, headers, body)] = server.received
    assert body == delivery.body.encode() and headers["content-type"] == "application/json"
    assert headers["webhook-id"] == delivery.message_id
    verify = _readme_verify()
    verify(endpoint.secret, headers, body)  # raises if it does not verify
    standardwebhooks.Webhook(endpoint.secret).verify(body, headers)
    with pytest.raises(ValueError, match="bad signature"):
        verify(endpoint.secret, headers, body.replace(b"suspended", b"activated"))
    with pytest.raises(ValueError, match="bad signature"):
        verify("whsec_" + "A" * 44, headers, body)
    with pytest.raises(ValueError, match="stale"):
        verify(endpoint.secret, {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}, body)
    [attempt] = delivered.attempt_log.all()
    assert attempt.status_code == 200 and attempt.response_excerpt == "ok"


def test_loopback_and_private_addresses_are_refused_unless_an_admin_allows_them(grant, reviewer, receiver):
    server = receiver()
    WebhookEndpoint.objects.create(url=server.url)  # allow_private_network off
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")

    delivered = webhook_attempt(WebhookDelivery.objects.get().pk)

    assert delivered.status == DeliveryStatus.FAILED and "loopback, private or reserved" in delivered.last_error
    assert server.received == []
    for address in ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1",
                    # IPv6 addresses that carry a private IPv4 one: NAT64, 6to4, IPv4-compatible, Teredo
                    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:a9fe:a9fe::1",
                    "::127.0.0.1", "2001:0:4136:e378:8000:63bf:f5ff:fffe"]:  # fmt: skip
        assert not address_allowed(address), address
    assert address_allowed("8.8.8.8") and address_allowed("2606:4700:4700::1111")

    form = WebhookEndpointForm(data={"url": "http://169.254.169.254/latest/meta-data", "events": ["grant.revoked"],
                                     "is_active": True, "secret": "whsec_" + "B" * 44})  # fmt: skip
    assert not form.is_valid() and "Allow private network" in form.errors["url"][0]
    form = WebhookEndpointForm(data={"url": "ftp://hooks.lab.example/", "events": ["grant.revoked"],
                                     "is_active": True, "secret": "whsec_" + "B" * 44})  # fmt: skip
    assert not form.is_valid()
    for url, secret in [
        ("https://hooks.lab.example:99999/", "whsec_" + "B" * 44),  # no such port
        ("https://hooks.lab.example/", "whsec_" + "!" * 30),  # not base64: an empty key anyone could sign with
        ("https://hooks.lab.example/", "whsec_" + "QUFB" * 4),  # 12 bytes: too short a key
    ]:
        form = WebhookEndpointForm(data={"url": url, "events": ["grant.revoked"], "is_active": True, "secret": secret})
        assert not form.is_valid(), (url, secret)
    good = WebhookEndpointForm(data={"url": "https://пример.рф/hooks", "events": ["grant.revoked"], "is_active": True,
                                     "secret": "whsec_" + "B" * 44})  # fmt: skip
    assert good.is_valid(), good.errors


def test_an_endpoint_that_cannot_be_used_fails_at_once_with_the_reason_logged(grant, reviewer):
    # Saved around the form (the admin's form refuses these), each would otherwise never be tried.
    broken = [
        WebhookEndpoint.objects.create(url="https://hooks.lab.example:99999/", allow_private_network=True),
        WebhookEndpoint.objects.create(url="https://hooks.lab.example/", secret="whsec_a", allow_private_network=True),
    ]
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")
    for endpoint in broken:
        delivery = webhook_attempt(WebhookDelivery.objects.get(endpoint=endpoint).pk)
        assert delivery.status == DeliveryStatus.FAILED and delivery.last_error, endpoint.url
        assert delivery.attempt_log.count() == 1 and delivery.next_attempt_at is None


def test_a_failed_redelivery_takes_away_neither_the_retries_nor_a_delivery(grant, reviewer, receiver, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    server = receiver(answers=[500, 500])
    WebhookEndpoint.objects.create(url=server.url, allow_private_network=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")
    delivery = webhook_attempt(WebhookDelivery.objects.get().pk)
    assert delivery.status == DeliveryStatus.RETRYING
    scheduled = delivery.next_attempt_at

    redelivered = webhook_attempt(delivery.pk, manual=True)  # answered 500 too
    assert (redelivered.status, redelivered.next_attempt_at, redelivered.attempts) == (
        DeliveryStatus.RETRYING, scheduled, 2
    )  # fmt: skip
    webhook_attempt(delivery.pk, manual=True)  # 200 now
    delivered = WebhookDelivery.objects.get()
    assert delivered.status == DeliveryStatus.DELIVERED and delivered.next_attempt_at is None
    server.answers = [503]
    again = webhook_attempt(delivery.pk, manual=True)
    assert again.status == DeliveryStatus.DELIVERED and again.delivered_at == delivered.delivered_at


# --- With a real Celery worker ------------------------------------------------------------------

WORKER_START_SECONDS = 60
RETRY_BASE_SECONDS = 0.5


@pytest.fixture(scope="module")
def webhook_queue():
    return f"test-webhooks-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, django_db_blocker, webhook_queue, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("webhook-worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": subprocess_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "WEBHOOK_QUEUE": webhook_queue,
        "WEBHOOK_RETRY_BASE_SECONDS": str(RETRY_BASE_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads", "--concurrency", "2",
        "--loglevel", "INFO", "--queues", webhook_queue, "--hostname", f"{webhook_queue}@%h",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + WORKER_START_SECONDS
    while "ready." not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the webhook worker did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    yield lambda: log_path.read_text(errors="replace")[-4000:]
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    with celery_app.connection_for_write() as conn:
        queue = Queue(webhook_queue, Exchange(webhook_queue), routing_key=webhook_queue).bind(conn.default_channel)
        queue.declare()
        queue.delete()


@pytest.mark.real_worker
def test_a_failing_receiver_gets_retries_with_backoff_and_a_visible_log(
    webhook_worker, webhook_queue, settings, transactional_db, grant, reviewer, receiver, admin_user_client
):
    settings.WEBHOOK_QUEUE = webhook_queue
    server = receiver(answers=[500, 503])  # fails twice, then succeeds
    endpoint = WebhookEndpoint.objects.create(url=server.url, allow_private_network=True, events=["grant.revoked"])

    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")
    server.wait_for(3)

    times = [moment for moment, _, _ in server.received]
    assert times[1] - times[0] >= RETRY_BASE_SECONDS * 0.9, webhook_worker()
    assert times[2] - times[1] >= 2 * RETRY_BASE_SECONDS * 0.9  # the delay doubled
    ids = {headers["webhook-id"] for _, headers, _ in server.received}
    assert len(ids) == 1  # one message, tried three times
    for _, headers, body in server.received:
        standardwebhooks.Webhook(endpoint.secret).verify(body, headers)
    delivery = WebhookDelivery.objects.get()
    deadline = time.monotonic() + 10
    while delivery.status != DeliveryStatus.DELIVERED and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 503, 200]

    # The admin's delivery log shows it, and redelivers it on demand.
    page = admin_user_client.get(f"/admin/access/webhookdelivery/{delivery.pk}/change/").content.decode()
    for shown in ("Delivered", "500", "503", "receiver down for maintenance", delivery.message_id):
        assert shown in page, shown
    listing = admin_user_client.get("/admin/access/webhookdelivery/?status=delivered").content.decode()
    assert "grant.revoked" in listing
    response = admin_user_client.post(
        "/admin/access/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    server.wait_for(4)
    assert server.received[3][1]["webhook-id"] == delivery.message_id
    deadline = time.monotonic() + 10
    while delivery.attempt_log.count() < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivery.attempt_log.last().manual


def test_an_unreachable_receiver_is_retried_later_with_the_error_logged(grant, reviewer, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    closed = Receiver()
    url = closed.url
    closed.close()  # nothing listens there any more: the connection is refused
    WebhookEndpoint.objects.create(url=url, allow_private_network=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")

    delivery = webhook_attempt(WebhookDelivery.objects.get().pk)

    assert delivery.status == DeliveryStatus.RETRYING and delivery.last_status_code is None
    assert "refused" in delivery.last_error.lower() or "connect" in delivery.last_error.lower()
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 29 <= wait <= 35
    # Not due yet: a duplicate task does nothing.
    assert webhook_attempt(delivery.pk) is None
    assert delivery.attempt_log.count() == 1


def test_the_sweep_sends_messages_whose_retry_is_overdue(grant, reviewer, receiver):
    import datetime as dt

    from django.utils import timezone

    from access.webhooks.services import webhooks_sweep

    server = receiver()
    WebhookEndpoint.objects.create(url=server.url, allow_private_network=True)
    grant_suspend(grant=grant, actor=reviewer, reason="Looking into a report.")
    overdue = timezone.now() - dt.timedelta(minutes=20)
    WebhookDelivery.objects.update(status=DeliveryStatus.RETRYING, next_attempt_at=overdue, attempts=1)

    assert webhooks_sweep() == 1  # queued (run at once here: tasks are eager outside real_worker tests)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED and len(server.received) == 1
    assert webhooks_sweep() == 0


def test_the_request_events_carry_the_request_and_the_decision(llama_catalog, researcher, outsider, reviewer, submit):
    from access.review.services import access_request_approve, access_request_reject, access_request_request_info

    WebhookEndpoint.objects.create(url="https://hooks.lab.example/portal")  # every event type

    def sent() -> list[dict]:
        return [json.loads(d.body) for d in WebhookDelivery.objects.order_by("pk")]

    first = submit(researcher, "llama-7b")
    access_request_request_info(access_request=first, reviewer=reviewer, message="Which lab are you with?")
    access_request_reject(access_request=first, reviewer=reviewer, reason="Outside the research program.")
    second = submit(outsider, "llama-13b")
    access_request_approve(access_request=second, reviewer=reviewer)

    bodies = sent()
    assert [body["type"] for body in bodies] == [
        "request.submitted", "request.info_requested", "request.decided", "request.submitted", "request.decided",
    ]  # fmt: skip
    rejected, approved = bodies[2]["data"], bodies[4]["data"]
    assert rejected["request"]["reference"] == first.reference and rejected["request"]["status"] == "rejected"
    assert rejected["request"]["applicant"] == researcher.email and rejected["request"]["variants"] == ["llama-7b"]
    assert "Outside the research program." in json.dumps(rejected["details"])
    assert rejected["request"]["url"].endswith(f"/review/requests/{first.pk}/")
    assert approved["request"]["status"] == "approved" and approved["actor"] == reviewer.email
    # The grant is not usable until its holder accepts the license: no grant.activated yet.
    assert not any(body["type"] == "grant.activated" for body in bodies)
