"""The worker's batcher in this process (its threads, the real engine, the test database): jobs
that arrive together decode as one batch, each with its own max tokens and stop sequences, and
the per-job time limit is enforced between steps."""

from __future__ import annotations

import threading

import pytest

from inference.sandbox import worker as worker_module
from inference.sandbox.models import JobEndpoint, JobStatus, SandboxJob
from inference.sandbox.services import sandbox_job_start
from inference.sandbox.transport import transport
from inference.sandbox.worker import Batcher


@pytest.fixture
def batcher(transactional_db, published_demo_weights, settings, tmp_path, monkeypatch):
    settings.SANDBOX_TRANSPORT = "files"
    settings.SANDBOX_STREAM_DIR = tmp_path / "streams"
    settings.SANDBOX_CACHE_DIR = tmp_path / "cache"
    settings.SANDBOX_BATCH_WINDOW_MS = 300
    batch_sizes = []
    real = worker_module.decode_steps

    def recording(model, prompts, params, scoring=None):
        batch_sizes.append(len(prompts))
        return real(model, prompts, params, scoring)

    monkeypatch.setattr(worker_module, "decode_steps", recording)
    b = Batcher(worker_name="test:1")
    b.batch_sizes = batch_sizes
    return b


@pytest.fixture
def started_job(published_demo_weights, researcher, reviewer, active_grant_make):
    variant = published_demo_weights[0]
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)

    def make(prompts, **params):
        job = SandboxJob.objects.create(
            user=researcher, grant=grant, variant=variant, endpoint=JobEndpoint.COMPLETIONS, prompts=prompts,
            params={"max_tokens": 16, "temperature": 0, "top_p": 1, "n": 1, "stop": [], "seed": None, "logprobs": None,
                    **params},
        )  # fmt: skip
        return sandbox_job_start(job_id=job.pk, worker="test:1", check_access=False)

    return make


def _run_together(batcher, jobs):
    with batcher.arriving():  # as the Celery threads do: the batch forms once all have arrived
        actives = [batcher.submit(job) for job in jobs]
    for active in actives:
        batcher.access_check(active)
    threads = [threading.Thread(target=batcher.wait, args=(active,)) for active in actives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def test_jobs_arriving_together_decode_as_one_batch_each_with_its_own_limits(batcher, started_job, demo_checkpoint):
    from inference.llama.checkpoint import load_llama
    from inference.llama.generate import SamplingParams, generate
    from inference.llama.tokenizer import Tokenizer

    short = started_job(["Once upon a time"], max_tokens=5)
    long = started_job(["The capital of France is", "Hello"], max_tokens=20, n=1)
    stopped = started_job(["Once upon a time"], max_tokens=20, stop=["e"])

    _run_together(batcher, [short, long, stopped])

    assert batcher.batch_sizes == [4]  # four rows, one batch
    model, tokenizer = load_llama(demo_checkpoint, device="cpu"), Tokenizer(demo_checkpoint / "tokenizer.model")
    for job, prompts, params in [
        (short, ["Once upon a time"], SamplingParams(max_new_tokens=5)),
        (long, ["The capital of France is", "Hello"], SamplingParams(max_new_tokens=20)),
        (stopped, ["Once upon a time"], SamplingParams(max_new_tokens=20, stop=("e",))),
    ]:
        job.refresh_from_db()
        alone = generate(model, tokenizer, prompts, params)
        assert job.status == JobStatus.SUCCEEDED
        assert job.outputs == [c.text for c in alone] and job.finish_reasons == [c.finish_reason for c in alone]
        assert job.completion_tokens == sum(len(c.tokens) for c in alone)


def test_greedy_and_seeded_sampling_never_share_a_batch(batcher, started_job):
    greedy = started_job(["Hello"])
    seeded = started_job(["Hello"], temperature=1.0, seed=3)

    _run_together(batcher, [greedy, seeded])

    assert sorted(batcher.batch_sizes) == [1, 1]


def test_a_job_past_its_time_limit_fails_between_steps(batcher, started_job, settings):
    settings.SANDBOX_JOB_TIME_LIMIT_SECONDS = 0  # already past when its first steps are drained
    job = started_job(["Hello"], max_tokens=1000)

    _run_together(batcher, [job])

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "timeout"
    events, _ = transport().read(job.pk, None, 0)
    assert events[-1]["status"] == 504


def test_a_job_whose_access_ended_while_queued_publishes_no_text(batcher, started_job, reviewer):
    from access.grants.services import grant_revoke

    job = started_job(["Hello"], max_tokens=50)
    grant_revoke(grant=job.grant, actor=reviewer, reason="Terms broken.")

    _run_together(batcher, [job])

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.error_code == "model_access_denied"
    events, _ = transport().read(job.pk, None, 0)
    assert [event["type"] for event in events] == ["error"] and events[0]["status"] == 403


def test_a_job_refused_before_the_model_read_it_is_charged_nothing(batcher, started_job):
    """Its first prompt fits but the second, with max_tokens, overflows the context: the job fails
    before any prefill, and none of its prompt tokens count against the day."""
    job = started_job([[1, 300, 301], [1] + [300] * 1500], max_tokens=1000, echo=True, logprobs=1)

    _run_together(batcher, [job])

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "context_length_exceeded"
    assert (job.prompt_tokens, job.completion_tokens) == (0, 0)


def test_echo_jobs_batch_with_others_and_score_only_what_they_ask(batcher, started_job, demo_checkpoint):
    """An echo job scoring its prompts (max_tokens 0), an echoed completion and a plain one share
    one batch; the plain one's text is what it gets alone, the echoed one reads on from its prompt."""
    from inference.llama.checkpoint import load_llama
    from inference.llama.generate import SamplingParams, generate
    from inference.llama.tokenizer import Tokenizer

    scoring = started_job([[1, 300, 301, 302], [5, 6]], max_tokens=0, echo=True, logprobs=2, n=2)
    echoed = started_job(["Once upon a time"], max_tokens=6, echo=True)
    plain = started_job(["Once upon a time"], max_tokens=6)

    _run_together(batcher, [scoring, echoed, plain])

    assert batcher.batch_sizes == [6]
    model, tokenizer = load_llama(demo_checkpoint, device="cpu"), Tokenizer(demo_checkpoint / "tokenizer.model")
    alone = generate(model, tokenizer, ["Once upon a time"], SamplingParams(max_new_tokens=6))[0]
    for job in (scoring, echoed, plain):
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert scoring.outputs == ["", "", "", ""] and scoring.finish_reasons == ["length"] * 4
    assert scoring.prompt_tokens == 2 * (4 + 2) and scoring.completion_tokens == 0
    assert plain.outputs == [alone.text]
    # In context, a first token that starts a word keeps its space; alone it does not.
    assert echoed.outputs[0].lstrip() == alone.text.lstrip() and echoed.outputs[0].endswith(alone.text)
    events, _ = transport().read(scoring.pk, None, 0)
    choices = [c for e in events if e["type"] == "delta" for c in e["choices"]]
    assert sorted(c["index"] for c in choices) == [0, 1, 2, 3]
    first = next(c for c in choices if c["index"] == 0)
    assert [t["logprob"] is None for t in first["tokens"]] == [True, False, False, False]
    assert all(len(t["top"]) in (2, 3) for t in first["tokens"][1:])
