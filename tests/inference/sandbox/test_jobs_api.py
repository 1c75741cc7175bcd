"""/api/v1/sandbox/: the caller's jobs, one job with its records, cancelling, today's usage.
Another user's job is a 404, like a missing one."""

from __future__ import annotations

import uuid

import pytest

from inference.sandbox.models import JobEndpoint, JobStatus, SandboxJob


@pytest.fixture
def job_of(sandbox_grant):
    def make(user, **fields):
        return SandboxJob.objects.create(
            user=user, grant=sandbox_grant, variant=sandbox_grant.variant, endpoint=JobEndpoint.COMPLETIONS,
            params={"max_tokens": 16}, prompts=["Hello"], completion_tokens_reserved=16, **fields,
        )  # fmt: skip

    return make


def test_the_researcher_lists_their_jobs_newest_first(bearer_client, researcher, job_of):
    older = job_of(researcher, status=JobStatus.SUCCEEDED, prompt_tokens=3, completion_tokens=5, outputs=["hi"])
    newer = job_of(researcher)

    response = bearer_client(researcher).get("/api/v1/sandbox/jobs")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [str(newer.pk), str(older.pk)]
    assert rows[1]["total_tokens"] == 8 and rows[1]["model"] == "llama-7b" and rows[1]["openai_id"].startswith("cmpl-")
    assert "prompts" not in rows[1]


def test_one_job_shows_its_records_and_how_long_they_are_kept(bearer_client, researcher, job_of, settings):
    job = job_of(researcher, status=JobStatus.FAILED, error_code="worker_lost", error_message="stopped")

    body = bearer_client(researcher).get(f"/api/v1/sandbox/jobs/{job.pk}").json()

    assert body["prompts"] == ["Hello"] and body["error"] == {"code": "worker_lost", "message": "stopped"}
    assert body["records_kept_until"].startswith(
        (job.created_at + __import__("datetime").timedelta(days=settings.SANDBOX_RECORD_RETENTION_DAYS))
        .date()
        .isoformat()
    )


def test_another_users_job_and_an_unknown_id_are_404(bearer_client, researcher, outsider, job_of):
    job = job_of(researcher)

    for path in (f"/api/v1/sandbox/jobs/{job.pk}", f"/api/v1/sandbox/jobs/{uuid.uuid4()}"):
        response = bearer_client(outsider).get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert bearer_client(outsider).post(f"/api/v1/sandbox/jobs/{job.pk}/cancel").status_code == 404
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is None
    assert bearer_client(outsider).get("/api/v1/sandbox/jobs").json()["results"] == []


def test_cancel_asks_a_running_job_to_stop_and_leaves_an_ended_one_alone(bearer_client, researcher, job_of):
    running = job_of(researcher, status=JobStatus.RUNNING)
    ended = job_of(researcher, status=JobStatus.SUCCEEDED)

    assert bearer_client(researcher).post(f"/api/v1/sandbox/jobs/{running.pk}/cancel").json()["cancel_requested_at"]
    response = bearer_client(researcher).post(f"/api/v1/sandbox/jobs/{ended.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    assert response.json()["cancel_requested_at"] is None
    assert bearer_client(researcher).get(f"/api/v1/sandbox/jobs/{running.pk}/cancel").status_code == 405


def test_usage_reports_today_against_the_limits(bearer_client, researcher, job_of, settings):
    job_of(researcher, status=JobStatus.SUCCEEDED, prompt_tokens=4, completion_tokens=6)
    job_of(researcher)  # live: its 16 reserved tokens count

    body = bearer_client(researcher).get("/api/v1/sandbox/usage").json()

    assert body["limits"] == {
        "concurrent_requests": settings.SANDBOX_CONCURRENT_REQUESTS,
        "requests_per_minute": settings.SANDBOX_REQUESTS_PER_MINUTE,
        "tokens_per_day": settings.SANDBOX_TOKENS_PER_DAY,
        "overridden": False,
    }
    assert body["tokens_today"] == 26 and body["tokens_left_today"] == settings.SANDBOX_TOKENS_PER_DAY - 26
    assert body["live_requests"] == 1 and body["jobs_today"] == 2 and body["requests_left_this_minute"] == 58


def test_the_jobs_api_needs_authentication(api_client):
    assert api_client.get("/api/v1/sandbox/jobs").status_code == 401
    assert api_client.get("/api/v1/sandbox/usage").status_code == 401
