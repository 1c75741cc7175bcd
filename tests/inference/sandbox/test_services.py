"""Admission, quotas, the one-start rule, the sweep and the retention purge, without a worker:
what the services decide and record."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from access.audit.models import AuditEvent
from access.distribution.models import DownloadBundle
from inference.sandbox.models import JobStatus, SandboxJob
from inference.sandbox.openai_params import ParamError, chat_request_parse, completion_request_parse
from inference.sandbox.selectors import sandbox_usage
from inference.sandbox.services import (
    SandboxLimitError,
    sandbox_job_cancel,
    sandbox_job_start,
    sandbox_job_submit,
    sandbox_jobs_sweep,
    sandbox_quota_set,
    sandbox_records_purge,
)
from inference.sandbox.transport import transport
from tests.helpers import clock_at


@pytest.fixture(autouse=True)
def _streams_in_tmp(settings, tmp_path):
    settings.SANDBOX_TRANSPORT = "files"
    settings.SANDBOX_STREAM_DIR = tmp_path / "streams"


@pytest.fixture
def submit(researcher, sandbox_grant, django_capture_on_commit_callbacks, monkeypatch):
    """submit(**body): admit a request for llama-7b as the researcher; the task it sends is recorded."""
    sent = []
    monkeypatch.setattr(
        "celery.app.base.Celery.send_task",
        lambda self, name, args, queue, **options: sent.append((name, args, queue)),
    )

    def run(user=None, network="", **body):
        body = {"model": "llama-7b", "prompt": "Hello", "max_tokens": 16, **body}
        with django_capture_on_commit_callbacks(execute=True):
            job, headers = sandbox_job_submit(
                user=user or researcher, variant=sandbox_grant.variant, grant=sandbox_grant,
                generation=completion_request_parse(body), network=network,
            )  # fmt: skip
        return job, headers

    run.sent = sent
    return run


def _events(job) -> list[dict]:
    events, _ = transport().read(job.pk, None, 0)
    return events


def test_an_admitted_request_is_a_queued_job_attributed_to_its_grant_and_sent_to_the_sandbox_queue(
    submit, sandbox_grant, settings
):
    job, headers = submit(prompt=["a", "b"], n=2, max_tokens=10)

    assert job.status == JobStatus.QUEUED and job.grant == sandbox_grant and job.prompts == ["a", "b"]
    assert job.completion_tokens_reserved == 40  # 2 prompts x n=2 x 10 tokens
    assert submit.sent == [("inference.sandbox_job_run", [str(job.pk)], settings.SANDBOX_QUEUE)]
    assert headers["x-ratelimit-remaining-requests"] == str(settings.SANDBOX_REQUESTS_PER_MINUTE - 1)
    assert headers["x-ratelimit-remaining-tokens"] == str(settings.SANDBOX_TOKENS_PER_DAY)


def test_requests_per_minute_are_limited_with_the_seconds_until_the_oldest_leaves(submit, settings):
    settings.SANDBOX_REQUESTS_PER_MINUTE = 2
    settings.SANDBOX_CONCURRENT_REQUESTS = 10
    start = timezone.now()
    with clock_at(start):
        submit()
    with clock_at(start + dt.timedelta(seconds=20)):
        submit()
    with clock_at(start + dt.timedelta(seconds=45)), pytest.raises(SandboxLimitError) as limited:
        submit()

    assert limited.value.status == 429 and limited.value.code == "rate_limit_exceeded"
    assert limited.value.headers["Retry-After"] == "15"
    assert limited.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert SandboxJob.objects.count() == 2


def test_the_daily_budget_counts_ended_jobs_and_reserves_live_ones(submit, settings):
    settings.SANDBOX_TOKENS_PER_DAY = 100
    done, _ = submit(max_tokens=30)
    SandboxJob.objects.filter(pk=done.pk).update(status=JobStatus.SUCCEEDED, prompt_tokens=5, completion_tokens=20)
    submit(max_tokens=40)  # live: 40 reserved

    usage = sandbox_usage(done.user)
    assert usage.tokens_today == 65 and usage.tokens_left == 35
    with pytest.raises(SandboxLimitError) as too_big:
        submit(max_tokens=36)
    assert too_big.value.code == "insufficient_quota" and "35" in too_big.value.message
    assert too_big.value.headers["x-should-retry"] == "false"
    submit(max_tokens=35)
    with pytest.raises(SandboxLimitError) as used_up:
        submit(max_tokens=1)
    assert "used today's sandbox budget" in used_up.value.message


def test_a_full_queue_answers_503_with_retry_after(submit, settings):
    settings.SANDBOX_QUEUE_LIMIT = 1
    submit()
    with pytest.raises(SandboxLimitError) as full:
        submit()

    assert full.value.status == 503 and full.value.headers["Retry-After"] == "5"


def test_a_variant_caps_max_tokens_below_the_global_cap(submit, sandbox_grant):
    sandbox_grant.variant.sandbox_max_tokens = 8
    sandbox_grant.variant.save()

    with pytest.raises(ParamError) as capped:
        submit(max_tokens=9)
    assert capped.value.param == "max_tokens" and "8" in capped.value.message


def test_a_reviewer_raises_one_users_limits_and_it_is_audited(submit, researcher, reviewer, settings):
    settings.SANDBOX_CONCURRENT_REQUESTS = 1
    submit()
    with pytest.raises(SandboxLimitError):
        submit()

    sandbox_quota_set(user=researcher, actor=reviewer, concurrent_requests=3, requests_per_minute=None,
                      tokens_per_day=None, note="Running an evaluation.")  # fmt: skip
    submit()

    event = AuditEvent.objects.get(action="sandbox.quota_set")
    assert event.actor == reviewer and event.details["after"]["concurrent_requests"] == 3
    sandbox_quota_set(user=researcher, actor=reviewer, concurrent_requests=None, requests_per_minute=None,
                      tokens_per_day=None)  # fmt: skip
    assert not sandbox_usage(researcher).limits.overridden


def test_nobody_changes_their_own_limits(reviewer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="another reviewer"):
        sandbox_quota_set(user=reviewer, actor=reviewer, concurrent_requests=99, requests_per_minute=None,
                          tokens_per_day=None, note="More for me.")  # fmt: skip
    assert not AuditEvent.objects.filter(action="sandbox.quota_set").exists()


def test_a_job_starts_once_only(submit):
    job, _ = submit()

    assert sandbox_job_start(job_id=job.pk, worker="w1:1").status == JobStatus.RUNNING
    assert sandbox_job_start(job_id=job.pk, worker="w2:2") is None  # a redelivered task runs nothing
    job.refresh_from_db()
    assert job.worker == "w1:1"


def test_a_job_queued_too_long_expires_instead_of_running(submit, settings):
    job, _ = submit()
    later = timezone.now() + dt.timedelta(seconds=settings.SANDBOX_QUEUE_TIMEOUT_SECONDS + 1)

    with clock_at(later):
        assert sandbox_job_start(job_id=job.pk, worker="w:1") is None

    job.refresh_from_db()
    assert job.status == JobStatus.EXPIRED and _events(job)[-1]["code"] == "queue_timeout"


def test_a_job_whose_grant_was_revoked_while_queued_does_not_run(submit, sandbox_grant, reviewer):
    from access.grants.services import grant_revoke

    job, _ = submit()
    grant_revoke(grant=sandbox_grant, actor=reviewer, reason="Terms broken.")

    assert sandbox_job_start(job_id=job.pk, worker="w:1") is None
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and _events(job)[-1]["status"] == 403


def test_the_sweep_fails_jobs_whose_worker_went_silent_and_expires_stale_queued_ones(submit, settings):
    running, _ = submit()
    sandbox_job_start(job_id=running.pk, worker="w:1")
    fresh, _ = submit()
    stale_queued, _ = submit()
    SandboxJob.objects.filter(pk=stale_queued.pk).update(
        created_at=timezone.now() - dt.timedelta(seconds=settings.SANDBOX_QUEUE_TIMEOUT_SECONDS + 5)
    )

    with clock_at(timezone.now() + dt.timedelta(seconds=settings.SANDBOX_HEARTBEAT_TIMEOUT_SECONDS + 1)):
        result = sandbox_jobs_sweep()

    assert result["lost"] == 1 and result["expired"] == 1
    statuses = {job.pk: job.status for job in SandboxJob.objects.all()}
    assert statuses == {running.pk: "failed", fresh.pk: "queued", stale_queued.pk: "expired"}
    assert _events(running)[-1] == {
        "type": "error", "status": 500, "code": "worker_lost",
        "message": "The sandbox worker running this request stopped. Nothing was charged for it; try again.",
    }  # fmt: skip


def test_cancelling_a_queued_job_ends_it_at_once_and_tells_its_stream(
    submit, researcher, django_capture_on_commit_callbacks
):
    job, _ = submit()

    with django_capture_on_commit_callbacks(execute=True):
        sandbox_job_cancel(job=job, actor=researcher)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and _events(job)[-1]["code"] == "cancelled"
    assert not AuditEvent.objects.filter(action="sandbox.job_cancelled").exists()  # the owner's own


def test_prompts_and_outputs_are_purged_after_the_retention_period_counts_stay(submit, settings):
    old, _ = submit(prompt="secret prompt")
    SandboxJob.objects.filter(pk=old.pk).update(
        status=JobStatus.SUCCEEDED, outputs=["output"], completion_tokens=7,
        created_at=timezone.now() - dt.timedelta(days=settings.SANDBOX_RECORD_RETENTION_DAYS, hours=1),
    )  # fmt: skip
    recent, _ = submit(prompt="recent prompt")

    assert sandbox_records_purge() == 1

    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.prompts is None and old.outputs is None and old.completion_tokens == 7 and old.records_purged_at
    assert recent.prompts == ["recent prompt"]


def test_a_waiting_client_hears_of_a_job_that_ended_but_whose_stream_was_lost(submit):
    from inference.sandbox.services import sandbox_job_check_alive

    job, _ = submit()
    SandboxJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert sandbox_job_check_alive(job_id=job.pk) is None  # its last event may still be on its way

    with clock_at(timezone.now() + dt.timedelta(seconds=3)):
        lost = sandbox_job_check_alive(job_id=job.pk)
    assert lost["code"] == "stream_lost" and str(job.pk) in lost["message"]


def test_sandbox_requests_from_too_many_networks_suspend_the_grants_download_links(
    submit, sandbox_grant, settings
):
    """The leak rule counts a grant's networks wherever it is used: here only in the sandbox."""
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    links = DownloadBundle.objects.create(grant=sandbox_grant, expires_at=timezone.now() + dt.timedelta(hours=1))
    for network in ("198.51.100.0/24", "198.51.100.0/24", "203.0.113.0/24"):
        job, _ = submit(network=network)
        assert job.network == network
    links.refresh_from_db()
    assert links.suspended_at is None  # two networks: within the limit

    submit(network="192.0.2.0/24")  # the job itself still runs; the reviewers decide about the grant
    links.refresh_from_db()
    assert links.suspended_at is not None
    assert "3 networks" in links.suspended_reason and "192.0.2.0/24" in links.suspended_reason


def test_chat_without_max_tokens_runs_to_the_models_own_cap(researcher, sandbox_grant, settings, monkeypatch):
    """A chat turn with no max_tokens means "until the turn ends": on a model capped below the
    sandbox's limit that is the model's cap, not a 400 for a number the client never sent."""
    monkeypatch.setattr("celery.app.base.Celery.send_task", lambda self, *args, **kwargs: None)
    variant = sandbox_grant.variant
    variant.sandbox_max_tokens = 8
    variant.save(update_fields=["sandbox_max_tokens"])
    generation = chat_request_parse({"model": variant.slug, "messages": [{"role": "user", "content": "Hi"}]})
    job, _ = sandbox_job_submit(user=researcher, variant=variant, grant=sandbox_grant, generation=generation)
    assert job.params["max_tokens"] == 8
    with pytest.raises(ParamError, match="at most 8"):  # asked for explicitly, it is still refused
        sandbox_job_submit(
            user=researcher, variant=variant, grant=sandbox_grant,
            generation=chat_request_parse({"model": variant.slug, "max_tokens": 9,
                                           "messages": [{"role": "user", "content": "Hi"}]}),
        )  # fmt: skip
