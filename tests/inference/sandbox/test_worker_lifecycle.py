"""A real sandbox worker process under trouble: killed with SIGKILL mid-generation, a job
cancelled through the API or abandoned by its client, access revoked while it runs."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from access.grants.services import grant_revoke
from inference.sandbox.models import JobStatus, SandboxJob

pytestmark = pytest.mark.real_worker

# Seconds of work even for the tiny demo model, which decodes one prompt's 1000 tokens in under a
# second: sooner than a busy machine passes on a hang-up, a kill or a cancel.
LONG = {"model": "llama-demo-tiny", "prompt": ["The capital of France is"] * 32, "max_tokens": 1000, "temperature": 0}


def _wait_for(predicate, seconds: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s\n{log()}")
        time.sleep(0.05)


def test_a_worker_killed_mid_generation_fails_the_job_once_and_the_next_request_succeeds(
    openai_client, demo_grant, sandbox_worker
):
    stream = openai_client().completions.create(stream=True, **LONG)
    received = []
    first = next(iter(stream))
    received.append(first.choices[0].text)
    job = SandboxJob.objects.get()
    assert job.status == JobStatus.RUNNING

    sandbox_worker.kill()
    killed_at = time.monotonic()
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk.choices[0].text if chunk.choices else "")
    waited = time.monotonic() - killed_at

    assert waited < 10, f"the client heard of the crash only after {waited:.1f} s"
    assert "worker" in str(raised.value.message)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "worker_lost"
    started_at = job.started_at

    sandbox_worker.start()
    completion = openai_client().completions.create(
        model="llama-demo-tiny", prompt="Hello", max_tokens=8, temperature=0
    )
    assert completion.choices[0].text
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.started_at == started_at  # not run a second time
    assert SandboxJob.objects.filter(status=JobStatus.SUCCEEDED).count() == 1


def test_cancel_through_the_api_stops_a_running_stream_within_moments(
    openai_client, demo_grant, researcher, bearer_client
):
    stream = openai_client().completions.create(stream=True, **LONG)
    next(iter(stream))
    job = SandboxJob.objects.get()

    response = bearer_client(researcher).post(f"/api/v1/sandbox/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested_at"]
    cancelled_at = time.monotonic()
    with pytest.raises(openai.APIError) as raised:
        for _ in stream:
            pass

    assert time.monotonic() - cancelled_at < 3
    assert raised.value.code == "cancelled" if hasattr(raised.value, "code") else "cancelled" in str(raised.value)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.outputs is None
    assert job.finished_at is not None


def test_a_client_that_disconnects_cancels_its_job(openai_client, demo_grant):
    stream = openai_client().completions.create(stream=True, **LONG)
    next(iter(stream))
    stream.close()  # the client hangs up mid-stream

    job = SandboxJob.objects.get()
    _wait_for(lambda: SandboxJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED, 10, "the job's cancellation")
    job.refresh_from_db()
    assert job.error_code == "cancelled"


def test_revoking_the_grant_stops_running_jobs_and_refuses_the_next(openai_client, demo_grant, reviewer):
    stream = openai_client().completions.create(stream=True, **LONG)
    next(iter(stream))

    grant_revoke(grant=demo_grant, actor=reviewer, reason="Terms broken.")
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass

    assert SandboxJob.objects.get().status == JobStatus.CANCELLED
    with pytest.raises(openai.PermissionDeniedError):
        openai_client().completions.create(model="llama-demo-tiny", prompt="Hello", max_tokens=4)


def test_concurrent_requests_over_the_limit_get_429_with_retry_after(openai_client, demo_grant, settings):
    settings.SANDBOX_CONCURRENT_REQUESTS = 1
    stream = openai_client().completions.create(stream=True, **LONG)
    next(iter(stream))

    with pytest.raises(openai.RateLimitError) as limited:
        openai_client().completions.create(model="llama-demo-tiny", prompt="Hello", max_tokens=4)

    headers = limited.value.response.headers
    assert headers["retry-after"] == "1" and limited.value.code == "concurrent_requests_exceeded"
    assert headers["x-ratelimit-limit-requests"] == "60"
    stream.close()
    _wait_for(lambda: not SandboxJob.objects.get().is_live, 10, "the abandoned job's end")


def test_requests_that_wait_together_decode_as_one_batch(openai_client, demo_grant, researcher, bearer_client, settings):
    settings.SANDBOX_CONCURRENT_REQUESTS = 10
    busy = openai_client().completions.create(stream=True, **LONG)  # keeps the worker's device busy
    next(iter(busy))
    busy_job = SandboxJob.objects.get()
    results = {}

    def ask(i):
        results[i] = openai_client().completions.create(
            model="llama-demo-tiny", prompt=f"Story number {i}", max_tokens=24, temperature=0
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    waiting = SandboxJob.objects.exclude(pk=busy_job.pk)
    _wait_for(lambda: waiting.filter(status=JobStatus.RUNNING).count() == 4, 20, "four started jobs")
    bearer_client(researcher).post(f"/api/v1/sandbox/jobs/{busy_job.pk}/cancel")
    for thread in threads:
        thread.join(timeout=60)
    busy.close()

    assert len(results) == 4 and all(r.choices[0].text for r in results.values())
    jobs = list(waiting)
    # Each job's first token came after every job had started: they were decoded together.
    assert max(job.started_at for job in jobs) < min(job.first_token_at for job in jobs)
    assert all(job.status == JobStatus.SUCCEEDED for job in jobs)
