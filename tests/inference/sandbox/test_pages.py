"""The sandbox's pages. The researcher's: the playground (models, snippets, limits, recent jobs, or
how to get a model), a job's record with its cancel button, their use against their limits. The
reviewers': use per user over a period, one user's jobs with prompts and outputs, their quota.

Personas: a researcher with an active llama-7b grant (which the seeded catalog offers in the
sandbox), an outsider without one, a reviewer (logged in with a TOTP code) and an admin. Every
view gets its happy path, 405 for a wrong method, outsiders refused, and the side effect it must
leave. Streaming in the playground itself is tested in a browser (test_playground_browser.py)."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from inference.sandbox.models import JobEndpoint, JobStatus, SandboxJob, SandboxQuota
from inference.sandbox.selectors import sandbox_limits_for
from inference.sandbox.services import sandbox_quota_set

LOGIN_URL = "/accounts/login/"


def _job(grant, *, ago: dt.timedelta = dt.timedelta(minutes=5), **fields) -> SandboxJob:
    """A job of the grant's holder, ended as a successful one unless ``fields`` say otherwise."""
    created = timezone.now() - ago
    values = {
        "user": grant.user, "grant": grant, "variant": grant.variant, "endpoint": JobEndpoint.COMPLETIONS,
        "source": "playground", "stream": True, "status": JobStatus.SUCCEEDED,
        "params": {"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "n": 1, "stop": ["\n\n"], "seed": None},
        "prompts": ["The capital of France is"], "outputs": [" Paris, of course."], "finish_reasons": ["stop"],
        "prompt_tokens": 6, "completion_tokens": 5, "completion_tokens_reserved": 8,
        "created_at": created, "started_at": created + dt.timedelta(milliseconds=40),
        "first_token_at": created + dt.timedelta(milliseconds=90),
        "finished_at": created + dt.timedelta(milliseconds=590),
    }  # fmt: skip
    values.update(fields)
    return SandboxJob.objects.create(**values)


def _page(response) -> str:
    return html.unescape(response.content.decode())


def _messages(response) -> str:
    return "\n".join(str(message) for message in response.context["messages"])


def _logged_in(user, login_with_password) -> Client:
    client = Client()
    login_with_password(client, user)
    return client


def _quota_events(user):
    return AuditEvent.objects.filter(action="sandbox.quota_set", target_type="portal.user", target_id=str(user.pk))


@pytest.fixture
def demo_variant(llama_catalog):
    return ModelVariant.objects.get(slug="llama-demo-tiny")


# --- The playground -------------------------------------------------------------------------------


def test_the_playground_offers_the_granted_model_with_limits_snippets_and_the_retention_notice(
    researcher_client, sandbox_grant, settings
):
    settings.SANDBOX_RECORD_RETENTION_DAYS = 14
    settings.SANDBOX_TOKENS_PER_DAY = 5000
    _job(sandbox_grant, prompt_tokens=100, completion_tokens=23)

    response = researcher_client.get("/sandbox/")

    assert response.status_code == 200
    page = _page(response)
    assert [variant.slug for variant in response.context["variants"]] == ["llama-7b"]
    assert re.search(r'<option value="llama-7b" data-max-tokens="\d+" data-prompt-tokens="1536" selected>', page)
    # The script and its configuration, no inline script (the CSP forbids it).
    assert re.search(r'<script src="/static/sandbox/playground\.js" defer></script>', page)
    assert "<script>" not in page
    assert 'data-completions-url="/v1/completions"' in page
    assert 'data-chat-url="/v1/chat/completions"' in page
    assert 'data-cancel-path="/api/v1/sandbox/jobs/{id}/cancel"' in page
    assert re.search(r'data-job-path="/sandbox/jobs/\{id\}/"', page)
    assert re.search(r'data-csrf-token="[\w-]{20,}"', page)
    # The snippets carry the absolute base URL and a placeholder for the token, never a token.
    assert "curl http://testserver/v1/completions" in page
    assert 'OpenAI(base_url="http://testserver/v1/", api_key=os.environ["PORTAL_API_TOKEN"])' in page
    assert "http://testserver/sandbox/llama-7b/v1/" in page
    # The evaluation command: the model's own base URL, its remote tokenizer, its prompt cap, the
    # researcher's concurrency limit, and the token only as a variable.
    assert (
        "--model_args model=llama-7b,base_url=http://testserver/sandbox/llama-7b/v1/completions,"
        "tokenizer_backend=remote,auth_token=$PORTAL_API_TOKEN,max_length=1536,num_concurrent=4,max_retries=10"
    ) in page
    assert f'href="{reverse("account")}#api-tokens"' in page
    # Today's use against the limits, and how long prompts are kept.
    assert response.context["usage"].tokens_today == 123
    assert "123</span> of 5,000" in page
    assert "kept for\n        <strong>14 days</strong>" in page


def test_the_playground_preselects_the_model_the_link_names_and_bounds_its_max_tokens(
    researcher, researcher_client, reviewer, sandbox_grant, demo_variant, active_grant_make
):
    demo_variant.sandbox_max_tokens = 32
    demo_variant.sandbox_max_prompt_tokens = 512
    demo_variant.save()
    active_grant_make(user=researcher, variant=demo_variant, reviewer=reviewer)

    page = _page(researcher_client.get("/sandbox/?model=llama-demo-tiny"))

    assert '<option value="llama-demo-tiny" data-max-tokens="32" data-prompt-tokens="512" selected>' in page
    assert '<option value="llama-7b" data-max-tokens="1024" data-prompt-tokens="1536">' in page
    assert 'max="32"' in page and 'value="32"' in page  # the starting value fits the cap
    assert "base_url=http://testserver/sandbox/llama-demo-tiny/v1/completions" in page
    assert "max_length=512," in page  # the evaluation snippet sends no prompt the model would refuse


def test_a_researcher_without_a_sandbox_model_is_told_how_to_get_one(outsider, login_with_password, llama_catalog):
    response = _logged_in(outsider, login_with_password).get("/sandbox/")

    assert response.status_code == 200
    page = _page(response)
    assert "No model to try yet" in page
    assert f'href="{reverse("catalog")}"' in page and f'href="{reverse("apply")}"' in page
    assert 'id="playground"' not in page and "playground.js" in page  # the script finds nothing to do


def test_the_playground_lists_the_last_ten_jobs_newest_first(researcher_client, sandbox_grant):
    jobs = [_job(sandbox_grant, ago=dt.timedelta(minutes=minutes)) for minutes in range(12)]

    response = researcher_client.get("/sandbox/")

    assert [job.pk for job in response.context["jobs"]] == [job.pk for job in jobs[:10]]
    page = _page(response)
    assert page.count('data-testid="job-row"') == 10
    assert f'href="/sandbox/jobs/{jobs[0].pk}/"' in page
    assert f'href="/sandbox/jobs/{jobs[11].pk}/"' not in page


def test_the_playground_shows_nobody_elses_jobs(researcher, outsider, reviewer, sandbox_grant, login_with_password,
                                                active_grant_make):  # fmt: skip
    other = active_grant_make(user=outsider, variant=sandbox_grant.variant, reviewer=reviewer)
    theirs = _job(other)

    response = _logged_in(researcher, login_with_password).get("/sandbox/")

    assert str(theirs.pk) not in response.content.decode()


def test_the_playground_needs_a_login(client, llama_catalog):
    response = client.get("/sandbox/")

    assert response.status_code == 302 and response["Location"].startswith(LOGIN_URL)


@pytest.mark.parametrize("url", ["/sandbox/", "/sandbox/usage/"])
def test_the_researchers_pages_answer_only_get(researcher_client, sandbox_grant, url):
    assert researcher_client.post(url).status_code == 405


# --- A job's record -------------------------------------------------------------------------------


def test_a_jobs_page_shows_its_prompt_output_counts_timings_and_status(researcher_client, sandbox_grant, settings):
    settings.SANDBOX_RECORD_RETENTION_DAYS = 30
    job = _job(sandbox_grant)

    response = researcher_client.get(f"/sandbox/jobs/{job.pk}/")

    assert response.status_code == 200
    page = _page(response)
    assert job.public_id in page
    assert '<pre class="sandbox-text" data-testid="job-prompt">The capital of France is</pre>' in page
    assert '<pre class="sandbox-text" data-testid="job-output"> Paris, of course.</pre>' in page
    assert "6 prompt + 5 generated = 11" in page
    assert "Succeeded" in page
    timings = response.context["timings"]
    assert (timings.queued, timings.first_token, timings.generating, timings.total) == ("40 ms", "90 ms", "500 ms",
                                                                                        "590 ms")  # fmt: skip
    assert timings.tokens_per_second == "10.0"
    assert "Kept until" in page
    assert 'data-testid="cancel-job"' not in page  # an ended job has nothing to cancel


def test_a_failed_jobs_page_shows_the_error_and_a_purged_one_says_its_texts_are_gone(researcher_client, sandbox_grant):
    failed = _job(sandbox_grant, status=JobStatus.FAILED, outputs=None, error_code="worker_lost",
                  error_message="The sandbox worker running this request stopped.")  # fmt: skip
    purged = _job(sandbox_grant, prompts=None, outputs=None, records_purged_at=timezone.now())

    failed_page = _page(researcher_client.get(f"/sandbox/jobs/{failed.pk}/"))
    purged_page = _page(researcher_client.get(f"/sandbox/jobs/{purged.pk}/"))

    assert "worker_lost:</strong> The sandbox worker running this request stopped." in failed_page
    assert "No output: the job failed." in failed_page
    assert 'data-testid="records-purged"' in purged_page and "The capital of France" not in purged_page
    assert "6 prompt + 5 generated" in purged_page  # the counts stay


def test_another_users_job_and_an_unknown_one_are_not_found(outsider, researcher, sandbox_grant, login_with_password):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None)
    client = _logged_in(outsider, login_with_password)

    assert client.get(f"/sandbox/jobs/{job.pk}/").status_code == 404
    assert client.get(f"/sandbox/jobs/{uuid.uuid4()}/").status_code == 404
    assert client.post(f"/sandbox/jobs/{job.pk}/cancel/").status_code == 404
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is None


def test_a_running_job_has_a_cancel_button_that_asks_its_worker_to_stop(researcher_client, sandbox_grant):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, outputs=None, finished_at=None)

    page = _page(researcher_client.get(f"/sandbox/jobs/{job.pk}/"))
    response = researcher_client.post(f"/sandbox/jobs/{job.pk}/cancel/")

    assert f'action="/sandbox/jobs/{job.pk}/cancel/"' in page and 'data-testid="cancel-job"' in page
    assert response.status_code == 302 and response["Location"] == f"/sandbox/jobs/{job.pk}/"
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is not None
    # The owner's own cancellation is no reviewer's act: nothing for the audit log.
    assert not AuditEvent.objects.filter(action="sandbox.job_cancelled").exists()


def test_cancelling_a_queued_job_ends_it_at_once(
    researcher_client, sandbox_grant, sandbox_settings, django_capture_on_commit_callbacks
):
    job = _job(sandbox_grant, status=JobStatus.QUEUED, outputs=None, started_at=None, first_token_at=None,
               finished_at=None)  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        response = researcher_client.post(f"/sandbox/jobs/{job.pk}/cancel/", follow=True)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.error_code == "cancelled"
    assert "Cancelled" in _messages(response)


def test_cancelling_an_ended_job_changes_nothing(researcher_client, sandbox_grant):
    job = _job(sandbox_grant)

    response = researcher_client.post(f"/sandbox/jobs/{job.pk}/cancel/", follow=True)

    assert "already ended (succeeded)" in _messages(response)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.cancel_requested_at is None


def test_the_job_pages_answer_only_their_method(researcher_client, sandbox_grant):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None)

    assert researcher_client.post(f"/sandbox/jobs/{job.pk}/").status_code == 405
    assert researcher_client.get(f"/sandbox/jobs/{job.pk}/cancel/").status_code == 405
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is None


# --- The researcher's use -------------------------------------------------------------------------


def test_the_usage_page_shows_todays_use_against_the_limits_and_every_job(researcher, researcher_client, reviewer,
                                                                          sandbox_grant, settings):  # fmt: skip
    settings.SANDBOX_REQUESTS_PER_MINUTE = 30
    _job(sandbox_grant, prompt_tokens=1000, completion_tokens=234)
    _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None, completion_tokens_reserved=100,
         ago=dt.timedelta(seconds=5))  # fmt: skip
    yesterday = _job(sandbox_grant, ago=dt.timedelta(days=1, hours=1))
    sandbox_quota_set(user=researcher, actor=reviewer, concurrent_requests=None, requests_per_minute=None,
                      tokens_per_day=9000, note="Thesis deadline.")  # fmt: skip

    response = researcher_client.get("/sandbox/usage/")

    assert response.status_code == 200
    page = _page(response)
    usage = response.context["usage"]
    # Counted tokens of ended jobs; the running one's prompt (6 tokens) and its reserved budget.
    assert (usage.tokens_today, usage.live_requests, usage.requests_last_minute) == (1340, 1, 1)
    assert '<span data-testid="tokens-today">1,340</span> of 9,000' in page
    assert '<progress max="9000" value="1340"' in page
    assert '<span data-testid="requests-last-minute">1</span> of 30' in page
    assert "A reviewer set these limits for your account." in page
    assert f"/sandbox/jobs/{yesterday.pk}/" in page  # every job, not only today's


def test_the_usage_page_needs_a_login(client, llama_catalog):
    response = client.get("/sandbox/usage/")

    assert response.status_code == 302 and response["Location"].startswith(LOGIN_URL)


# --- The reviewers' pages -------------------------------------------------------------------------


@pytest.fixture
def two_users_jobs(researcher, outsider, reviewer, sandbox_grant, active_grant_make):
    """The researcher: 300 tokens three days ago and 11 today; the outsider: 500 tokens today."""
    other = active_grant_make(user=outsider, variant=sandbox_grant.variant, reviewer=reviewer)
    _job(sandbox_grant, ago=dt.timedelta(days=3), prompt_tokens=100, completion_tokens=200)
    _job(sandbox_grant)
    _job(other, prompt_tokens=400, completion_tokens=100, status=JobStatus.FAILED)
    return sandbox_grant, other


def test_reviewers_see_each_users_use_over_the_period_busiest_first(reviewer_client, two_users_jobs):
    week = reviewer_client.get("/review/sandbox/?days=7")
    day = reviewer_client.get("/review/sandbox/?days=1")

    assert week.status_code == 200
    rows = [(row["user__email"], row["jobs"], row["tokens"], row["failed"]) for row in week.context["page"]]
    assert rows == [("eve@elsewhere.example.com", 1, 500, 1), ("ada@uni.example.edu", 2, 311, 0)]
    assert [(row["user__email"], row["tokens"]) for row in day.context["page"]] == [
        ("eve@elsewhere.example.com", 500), ("ada@uni.example.edu", 11),
    ]  # fmt: skip
    page = _page(week)
    researcher = two_users_jobs[0].user
    assert f'href="/review/sandbox/users/{researcher.pk}/"' in page
    assert '<option value="7" selected>' in page
    assert 'aria-current="page" data-testid="nav-review-sandbox">Sandbox use</a>' in page


def test_the_period_defaults_to_a_week_and_an_odd_one_is_ignored(reviewer_client, two_users_jobs):
    default = reviewer_client.get("/review/sandbox/")
    odd = reviewer_client.get("/review/sandbox/?days=365")
    month = reviewer_client.get("/review/sandbox/?days=30")

    assert (default.context["days"], odd.context["days"], month.context["days"]) == (7, 7, 30)
    # The choice shown is the period in use.
    assert '<option value="7" selected>' in _page(default) and '<option value="7" selected>' in _page(odd)
    assert '<option value="30" selected>' in _page(month)


def test_a_reviewer_reads_a_users_jobs_with_prompts_and_outputs(reviewer_client, two_users_jobs):
    grant, _ = two_users_jobs
    purged = _job(grant, prompts=None, outputs=None, records_purged_at=timezone.now(), ago=dt.timedelta(days=40))

    response = reviewer_client.get(f"/review/sandbox/users/{grant.user.pk}/")

    assert response.status_code == 200
    page = _page(response)
    assert 'Sandbox use of <span data-testid="subject">ada@uni.example.edu</span>' in page
    assert page.count('data-testid="review-prompt">The capital of France is</pre>') == 2
    assert page.count('data-testid="review-output"> Paris, of course.</pre>') == 2
    assert f'data-job="{purged.pk}"' in page and "Prompts and outputs deleted" in page
    assert [(t["days"], t["jobs"], t["tokens"]) for t in response.context["totals"]] == [(1, 1, 11), (7, 2, 311),
                                                                                          (30, 2, 311)]  # fmt: skip
    assert 'data-testid="quota-default"' in page
    assert "eve@elsewhere" not in page.split("<h1>", 1)[1]  # only this user's jobs


def test_the_quota_form_changes_the_users_limits_and_writes_an_audit_event(reviewer, reviewer_client, researcher,
                                                                           sandbox_grant, settings):  # fmt: skip
    settings.SANDBOX_CONCURRENT_REQUESTS = 4

    response = reviewer_client.post(
        f"/review/sandbox/users/{researcher.pk}/quota/",
        {"concurrent_requests": "", "requests_per_minute": "10", "tokens_per_day": "1000000",
         "note": "Evaluation run for the paper."},
    )  # fmt: skip

    assert response.status_code == 302 and response["Location"] == f"/review/sandbox/users/{researcher.pk}/"
    limits = sandbox_limits_for(researcher)
    assert (limits.concurrent_requests, limits.requests_per_minute, limits.tokens_per_day) == (4, 10, 1_000_000)
    assert limits.overridden
    event = _quota_events(researcher).get()
    assert event.actor == reviewer
    assert event.details["after"] == {"concurrent_requests": None, "requests_per_minute": 10,
                                      "tokens_per_day": 1_000_000}  # fmt: skip
    assert event.details["note"] == "Evaluation run for the paper."
    page = _page(reviewer_client.get(response["Location"]))
    assert "Saved ada@uni.example.edu's sandbox limits." in page
    assert "“Evaluation run for the paper.”" in page and 'value="1000000"' in page


def test_a_quota_form_left_blank_restores_the_defaults(reviewer, reviewer_client, researcher, sandbox_grant):
    sandbox_quota_set(user=researcher, actor=reviewer, concurrent_requests=1, requests_per_minute=None,
                      tokens_per_day=None, note="Abuse suspected.")  # fmt: skip

    response = reviewer_client.post(f"/review/sandbox/users/{researcher.pk}/quota/", {"note": ""}, follow=True)

    assert not SandboxQuota.objects.filter(user=researcher).exists()
    assert not sandbox_limits_for(researcher).overridden
    assert "has the default sandbox limits again" in _messages(response)
    assert _quota_events(researcher).latest("occurred_at").details["after"] is None


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"tokens_per_day": "5000", "note": "  "}, "note", "Say why"),
        ({"tokens_per_day": "-1", "note": "Because."}, "tokens_per_day", "greater than or equal to 0"),
        ({"requests_per_minute": "many", "note": "Because."}, "requests_per_minute", "whole number"),
    ],
)
def test_a_bad_quota_form_is_shown_again_and_changes_nothing(reviewer_client, researcher, sandbox_grant, data, field,
                                                            message):  # fmt: skip
    response = reviewer_client.post(f"/review/sandbox/users/{researcher.pk}/quota/", data)

    assert response.status_code == 400
    assert message in " ".join(response.context["quota_form"].errors[field])
    assert not SandboxQuota.objects.filter(user=researcher).exists()
    assert not _quota_events(researcher).exists()


def test_a_reviewer_cancels_a_users_running_job_on_the_record(reviewer, reviewer_client, sandbox_grant):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, outputs=None, finished_at=None)

    page = _page(reviewer_client.get(f"/review/sandbox/users/{sandbox_grant.user.pk}/"))
    response = reviewer_client.post(f"/review/sandbox/jobs/{job.pk}/cancel/")

    assert f'action="/review/sandbox/jobs/{job.pk}/cancel/"' in page
    assert response.status_code == 302 and response["Location"] == f"/review/sandbox/users/{sandbox_grant.user.pk}/"
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is not None
    event = AuditEvent.objects.get(action="sandbox.job_cancelled")
    assert event.actor == reviewer and event.target_id == str(job.pk)


def test_unknown_users_and_jobs_are_not_found_for_reviewers(reviewer_client, llama_catalog):
    assert reviewer_client.get("/review/sandbox/users/999999/").status_code == 404
    assert reviewer_client.post("/review/sandbox/users/999999/quota/", {"note": ""}).status_code == 404
    assert reviewer_client.post(f"/review/sandbox/jobs/{uuid.uuid4()}/cancel/").status_code == 404


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/review/sandbox/"),
        ("post", "/review/sandbox/users/{user}/"),
        ("get", "/review/sandbox/users/{user}/quota/"),
        ("get", "/review/sandbox/jobs/{job}/cancel/"),
    ],
)
def test_the_review_pages_answer_only_their_method(reviewer_client, sandbox_grant, method, url):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None)

    response = getattr(reviewer_client, method)(url.format(user=sandbox_grant.user.pk, job=job.pk))

    assert response.status_code == 405
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is None


REVIEW_URLS = [
    ("get", "/review/sandbox/"),
    ("get", "/review/sandbox/users/{user}/"),
    ("post", "/review/sandbox/users/{user}/quota/"),
    ("post", "/review/sandbox/jobs/{job}/cancel/"),
]


@pytest.mark.parametrize(("method", "url"), REVIEW_URLS)
def test_researchers_get_403_at_every_sandbox_review_url(researcher, sandbox_grant, login_with_password, method, url):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None)
    client = _logged_in(researcher, login_with_password)

    response = getattr(client, method)(url.format(user=researcher.pk, job=job.pk), {"tokens_per_day": "9999999",
                                                                                   "note": "Mine."})  # fmt: skip

    assert response.status_code == 403
    assert not SandboxQuota.objects.exists()
    assert SandboxJob.objects.get(pk=job.pk).cancel_requested_at is None


@pytest.mark.parametrize(("method", "url"), REVIEW_URLS)
def test_anonymous_visitors_and_reviewers_without_a_second_factor_reach_no_sandbox_review_url(
    client, reviewer_without_mfa, sandbox_grant, login_with_password, method, url
):
    job = _job(sandbox_grant, status=JobStatus.RUNNING, finished_at=None)
    target = url.format(user=sandbox_grant.user.pk, job=job.pk)

    anonymous = getattr(client, method)(target)
    login_with_password(client, reviewer_without_mfa)
    no_mfa = getattr(client, method)(target, {"tokens_per_day": "1", "note": "x"})

    assert anonymous.status_code == 302 and anonymous["Location"].startswith(LOGIN_URL)
    assert no_mfa.status_code == 302 and not no_mfa["Location"].startswith(f"/review/sandbox/users/{job.user_id}/")
    assert not SandboxQuota.objects.exists()


# --- Links from the pages that promise the sandbox ------------------------------------------------


def test_the_pages_that_promise_the_sandbox_link_to_it(researcher_client, sandbox_grant):
    playground = reverse("sandbox-playground")

    catalog = _page(researcher_client.get("/"))
    variant = _page(researcher_client.get("/models/llama-7b/"))
    grants = _page(researcher_client.get("/grants/"))
    account = _page(researcher_client.get("/account/"))

    assert f'href="{playground}" data-testid="nav-sandbox"' in catalog
    assert f'href="{playground}" data-testid="home-sandbox"' in catalog
    assert f'href="{playground}?model=llama-7b" data-testid="try-llama-7b"' in catalog
    assert 'data-testid="try-llama-13b"' not in catalog  # no grant for it
    assert f'href="{playground}?model=llama-7b" data-testid="try-in-sandbox"' in variant
    assert f'href="{playground}?model=llama-7b" data-testid="grant-sandbox"' in grants
    assert 'id="api-tokens"' in account and f'href="{playground}#from-code"' in account


def test_visitors_see_the_promise_without_a_link(client, llama_catalog):
    page = _page(client.get("/"))

    assert "try the model in the\n     sandbox." in page
    assert 'data-testid="nav-sandbox"' not in page


def test_the_review_navigation_leads_to_sandbox_use(reviewer_client, llama_catalog):
    page = _page(reviewer_client.get("/review/"))

    assert 'href="/review/sandbox/" data-testid="nav-review-sandbox">Sandbox use</a>' in page


# --- The admin ------------------------------------------------------------------------------------


def test_admins_read_sandbox_jobs_and_quotas_in_the_admin_but_change_nothing(
    admin_user_client, reviewer, researcher, sandbox_grant
):
    job = _job(sandbox_grant, status=JobStatus.FAILED, error_code="worker_lost")
    sandbox_quota_set(user=researcher, actor=reviewer, concurrent_requests=2, requests_per_minute=None,
                      tokens_per_day=None, note="Shared lab account.")  # fmt: skip
    quota = SandboxQuota.objects.get()

    listing = admin_user_client.get("/admin/inference/sandboxjob/?status__exact=failed&source__exact=playground")
    searched = admin_user_client.get("/admin/inference/sandboxjob/?q=ada@uni")
    missed = admin_user_client.get("/admin/inference/sandboxjob/?q=nobody@example.com")
    detail = admin_user_client.get(f"/admin/inference/sandboxjob/{job.pk}/change/")
    changed = admin_user_client.post(f"/admin/inference/sandboxjob/{job.pk}/change/", {"status": "succeeded"})
    quotas = admin_user_client.get("/admin/inference/sandboxquota/")

    assert listing.status_code == 200 and list(listing.context["cl"].result_list) == [job]
    assert list(searched.context["cl"].result_list) == [job] and list(missed.context["cl"].result_list) == []
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert changed.status_code == 403 and SandboxJob.objects.get(pk=job.pk).status == JobStatus.FAILED
    assert admin_user_client.get("/admin/inference/sandboxjob/add/").status_code == 403
    assert quotas.status_code == 200 and list(quotas.context["cl"].result_list) == [quota]
    assert f'href="/review/sandbox/users/{researcher.pk}/#quota"' in quotas.content.decode()


def test_researchers_do_not_reach_the_sandbox_admin(researcher_client, sandbox_grant):
    response = researcher_client.get("/admin/inference/sandboxjob/")

    assert response.status_code == 302
