"""The sandbox worker: runs jobs in batches on one device, in a Celery worker process.

Each Celery task (one per job, in the ``threads`` pool) starts its job (``sandbox_job_start``),
hands it to this process's ``Batcher`` and waits. The batcher's one thread owns the device: it
takes the jobs that arrived together (within ``SANDBOX_BATCH_WINDOW_MS`` of the first, when the
recent load says more are coming), runs them as one batch through the engine (each row at its own
positions, each with its own max tokens and stop sequences), and appends each job's new text to its
stream every few decode steps. A second thread, the watchman, touches the running jobs every second
(their heartbeat: a job whose heartbeat stops is failed by whoever notices, so a killed worker
leaves nothing running) and looks several times a second for jobs cancelled by their client or whose
access ended; the batcher drops those rows at its next look, a few decode steps later. A job also
ends at its time limit (``SANDBOX_JOB_TIME_LIMIT_SECONDS``), enforced here, between steps.

Jobs batch together when they run the same model with the same sampling (greedy with greedy;
sampling at the same temperature and top_p, without a seed; a seeded job only with itself, so its
seed repeats its result).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from inference.llama.generate import SYNC_EVERY, PromptScoring, SamplingParams, Sequence, decode_steps
from inference.sandbox.checkpoints import CheckpointFetchError, checkpoint_fetch
from inference.sandbox.models import JobEndpoint, JobStatus, SandboxJob
from inference.sandbox.registry import ModelRegistry
from inference.sandbox.selectors import sandbox_access
from inference.sandbox.services import (
    sandbox_job_end,
    sandbox_job_succeed,
)
from inference.sandbox.tokenizers import prompt_ids
from inference.sandbox.transport import transport

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
CANCEL_POLL_SECONDS = 0.2
DRAIN_SECONDS = 0.05  # stream text at least this often, even between SYNC_EVERY-step drains
# How far back the batcher looks for how many jobs come together: longer than a batch runs, so a
# group whose batch just ended is still remembered when its clients come back.
LOAD_MEMORY_SECONDS = 10.0
FOLDER_RECHECK_SECONDS = 10.0


@dataclass
class Row:
    job: ActiveJob
    index: int  # the choice's index in the job's response
    prompt: list[int]
    prompt_index: int = 0
    seq: Sequence | None = None
    done: bool = False
    started: bool = False  # its first text (the echoed prompt, with echo) has gone out
    batch_index: int = 0  # its row in the running batch
    echo_chars: int = 0  # length of the echoed prompt text that precedes the completion


@dataclass
class ActiveJob:
    job: SandboxJob
    done: threading.Event = field(default_factory=threading.Event)
    rows: list[Row] = field(default_factory=list)
    deadline: float = 0.0
    stop_reason: tuple[str, str, int] | None = None  # (status, code, http status) set by the watchman
    first_token_at: object = None
    ended: bool = False
    prefilled: bool = False  # the model has read its prompts: from then on they count against the budget
    # Set once the task thread has checked access (beside the prefill, off the first token's path);
    # no text of the job is published before.
    access_checked: threading.Event = field(default_factory=threading.Event)

    @property
    def params(self) -> dict:
        return self.job.params

    def batch_key(self) -> tuple:
        p = self.params
        if p["temperature"] == 0:
            sampling = ("greedy",)
        elif p.get("seed") is not None:
            sampling = ("seeded", self.job.pk)
        else:
            sampling = ("sampled", p["temperature"], p["top_p"])
        return (self.job.variant_id, *sampling)


class Batcher:
    def __init__(self, *, worker_name: str, registry: ModelRegistry | None = None):
        self.worker_name = worker_name
        self.registry = registry or ModelRegistry(
            max_bytes=settings.SANDBOX_MODEL_MEMORY_MB * 2**20, device=settings.SANDBOX_DEVICE or None
        )
        self.transport = transport()
        self._pending: list[ActiveJob] = []
        self._running: dict[str, ActiveJob] = {}
        self._cond = threading.Condition()
        self._load: deque[tuple[float, int]] = deque()
        self._folders: dict[int, tuple[float, Path]] = {}
        self._arriving = 0  # jobs this process received and is starting: the batch waits for them
        threading.Thread(target=self._loop, name="sandbox-batcher", daemon=True).start()
        threading.Thread(target=self._watch, name="sandbox-watchman", daemon=True).start()

    # --- called from Celery task threads ----------------------------------------------------------

    @contextmanager
    def arriving(self):
        """Around a job's start: a batch about to form waits for jobs already in this process."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    def submit(self, job: SandboxJob) -> ActiveJob:
        """Queue a started job for the next batch."""
        active = ActiveJob(job=job, deadline=time.monotonic() + settings.SANDBOX_JOB_TIME_LIMIT_SECONDS)
        with self._cond:
            self._running[str(job.pk)] = active
            self._pending.append(active)
            self._cond.notify_all()
        return active

    def access_check(self, active: ActiveJob) -> None:
        """Whether the job's user may still use its model (access may have ended while it was
        queued); run by the task thread while the batcher already prefills."""
        try:
            _, _, refusal = sandbox_access(active.job.user, active.job.variant.slug)
            if refusal is not None:
                active.stop_reason = (JobStatus.CANCELLED, refusal.code, refusal.status)
        except Exception:  # unknown means no: the job must not run unchecked
            logger.exception("sandbox access check failed")
            active.stop_reason = (JobStatus.FAILED, "server_error", 500)
        finally:
            active.access_checked.set()

    def wait(self, active: ActiveJob) -> None:
        """Return once the job ended (the batcher ends every job it is given; the margin covers a
        batch stuck inside one step)."""
        if not active.done.wait(settings.SANDBOX_JOB_TIME_LIMIT_SECONDS + 30):
            self._end(active, JobStatus.FAILED, "timeout", 504, "The request ran past the sandbox's time limit.")

    def run(self, job: SandboxJob) -> None:
        """Run a started job to its end (the batch it joins may hold others)."""
        active = self.submit(job)
        self.access_check(active)
        self.wait(active)

    # --- the batcher thread -----------------------------------------------------------------------

    def _expected_jobs(self, now: float) -> int:
        """The largest batch this process ran lately: clients that come back as a group after
        their batch ends are waited for, so a straggler of the last round does not run alone
        while the group forms the next batch without it. (Jobs that merely overlap, such as a
        lone client's next request while its abandoned one still ends, never count as a group.)"""
        while self._load and self._load[0][0] < now - LOAD_MEMORY_SECONDS:
            self._load.popleft()
        return max((count for _, count in self._load), default=1)

    def _take_batch(self) -> list[ActiveJob]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            first_seen = time.monotonic()
            expected = min(self._expected_jobs(first_seen), settings.SANDBOX_MAX_BATCH)
            window = settings.SANDBOX_BATCH_WINDOW_MS / 1000
            while (len(self._pending) < expected or self._arriving) and time.monotonic() < first_seen + window:
                self._cond.wait(first_seen + window - time.monotonic())
            key = self._pending[0].batch_key()
            batch, rest, rows = [], [], 0
            for active in self._pending:
                wanted = active.params["n"] * len(active.job.prompts or [])
                if active.batch_key() == key and (not batch or rows + wanted <= settings.SANDBOX_MAX_BATCH):
                    batch.append(active)
                    rows += wanted
                else:
                    rest.append(active)
            self._pending = rest
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                close_old_connections()
                self._run_batch(batch)
                with self._cond:
                    self._load.append((time.monotonic(), len(batch)))
            except Exception as exc:  # a failed batch must end its jobs, not the worker
                logger.exception("sandbox batch failed")
                close_old_connections()
                for active in batch:
                    try:
                        self._end(active, JobStatus.FAILED, "server_error", 500, f"The sandbox worker failed: {exc}")
                    except Exception:  # the sweep ends it once its heartbeat stops
                        logger.exception("ending sandbox job %s failed", active.job.pk)
                        self._release(active)
            finally:
                close_old_connections()

    def _end(self, active: ActiveJob, status: str, code: str, http_status: int, message: str) -> None:
        if not active.ended:
            active.ended = True
            sandbox_job_end(
                job_id=active.job.pk, status=status, code=code, message=message, http_status=http_status,
                counts=self._counts(active),
            )  # fmt: skip
        self._release(active)

    def _stop(self, active: ActiveJob) -> None:
        status, code, http_status = active.stop_reason
        messages = {
            "cancelled": "This request was cancelled.",
            "server_error": "The sandbox could not check your access; try again.",
        }
        message = messages.get(code, "Your access to this model has ended; the sandbox stopped this request.")
        self._end(active, status, code, http_status, message)

    def _release(self, active: ActiveJob) -> None:
        for row in active.rows:
            row.done = True
        with self._cond:
            self._running.pop(str(active.job.pk), None)
        active.done.set()

    def _rows_prepare(self, active: ActiveJob, tokenizer, model_max_seq_len: int) -> str | None:
        """The job's rows (prompts x n), or why the job cannot run (an OpenAI 400 message)."""
        variant = active.job.variant
        cap = variant.sandbox_max_prompt_tokens or settings.SANDBOX_MAX_PROMPT_TOKENS
        params = active.params
        for prompt_index, prompt in enumerate(active.job.prompts or []):
            ids = prompt_ids(tokenizer, prompt)
            if not ids:
                return f"prompt {prompt_index} is empty."
            bad = [t for t in ids if not 0 <= t < tokenizer.n_words]
            if bad:
                return f"prompt {prompt_index} holds token id {bad[0]}, outside this model's vocabulary (0 to {tokenizer.n_words - 1})."
            if len(ids) > cap:
                return f"prompt {prompt_index} is {len(ids)} tokens long; {variant.slug} takes at most {cap} in the sandbox."
            if len(ids) + params["max_tokens"] > model_max_seq_len:
                return (
                    f"This model's context is {model_max_seq_len} tokens: prompt {prompt_index} ({len(ids)} tokens) "
                    f"plus max_tokens ({params['max_tokens']}) does not fit. Ask for fewer tokens."
                )
            for choice in range(params["n"]):
                active.rows.append(
                    Row(job=active, index=prompt_index * params["n"] + choice, prompt=ids, prompt_index=prompt_index)
                )
        return None

    def _checkpoint(self, variant) -> Path:
        """The variant's checked local copy; looked up again (new weights published?) at most
        every FOLDER_RECHECK_SECONDS, which keeps the lookup off most jobs' first token."""
        cached = self._folders.get(variant.pk)
        if cached is not None and time.monotonic() - cached[0] < FOLDER_RECHECK_SECONDS and cached[1].exists():
            return cached[1]
        folder = checkpoint_fetch(variant, settings.SANDBOX_CACHE_DIR)
        self._folders[variant.pk] = (time.monotonic(), folder)
        return folder

    def _run_batch(self, batch: list[ActiveJob]) -> None:
        variant = batch[0].job.variant
        try:
            folder = self._checkpoint(variant)
        except CheckpointFetchError as exc:
            for active in batch:
                self._end(active, JobStatus.FAILED, "model_unavailable", 503, str(exc))
            return
        loaded = self.registry.get(f"{variant.slug}:{folder.name}", folder)
        model, tokenizer = loaded.model, loaded.tokenizer
        runnable = []
        for active in batch:
            if active.stop_reason is not None:  # cancelled, or access ended, while it waited here
                self._stop(active)
                continue
            problem = None if active.rows else self._rows_prepare(active, tokenizer, model.args.max_seq_len)
            if problem:
                self._end(active, JobStatus.FAILED, "context_length_exceeded", 400, problem)
            else:
                runnable.append(active)
        if not runnable:
            return
        # Rows must fit the model's context together: the longest prompt plus the most new tokens.
        fitted, rest = [], []
        width = steps = 0
        for active in runnable:
            w = max(width, *(len(row.prompt) for row in active.rows))
            s = max(steps, active.params["max_tokens"])
            if fitted and w + s > model.args.max_seq_len:
                rest.append(active)
            else:
                fitted.append(active)
                width, steps = w, s
        if rest:
            with self._cond:
                self._pending[:0] = rest  # first in line for the next batch
                self._cond.notify_all()
        self._decode(fitted, model, tokenizer, steps)

    def _decode(self, jobs: list[ActiveJob], model, tokenizer, steps: int) -> None:
        first = jobs[0].params
        top = max((active.params.get("logprobs") or 0) for active in jobs)
        wants_logprobs = any(active.params.get("logprobs") is not None for active in jobs)
        shared = SamplingParams(
            max_new_tokens=steps, temperature=first["temperature"], top_p=first["top_p"], seed=first.get("seed"),
            logprobs=wants_logprobs, top_logprobs=top,
        )  # fmt: skip
        rows = [row for active in jobs for row in active.rows]
        for batch_index, row in enumerate(rows):
            p = row.job.params
            row.batch_index = batch_index
            row.seq = Sequence(
                tokenizer,
                row.prompt,
                SamplingParams(max_new_tokens=p["max_tokens"], stop=tuple(p["stop"]), logprobs=wants_logprobs),
                # An echoed completion reads on from its prompt: " there" after "Once upon a time".
                in_context=bool(p.get("echo")),
            )
        # Echo with logprobs: the prefill also scores each such prompt once (its first choice's row).
        scored = frozenset(
            row.batch_index for row in rows
            if row.job.params.get("echo") and row.job.params.get("logprobs") is not None
            and row.index % row.job.params["n"] == 0
        )  # fmt: skip
        scoring = PromptScoring(rows=scored, top_k=top) if scored else None
        window = []
        last_drain = time.monotonic()
        for step_number, step in enumerate(decode_steps(model, [row.prompt for row in rows], shared, scoring)):
            window.append(step)
            now = time.monotonic()
            if step_number == 0 or len(window) >= SYNC_EVERY or now - last_drain >= DRAIN_SECONDS:
                self._drain(window, rows, jobs, tokenizer, top, scoring)
                window, last_drain = [], time.monotonic()
                if all(active.ended for active in jobs):
                    return
        self._drain(window, rows, jobs, tokenizer, top, scoring)

    @staticmethod
    def _echo(row: Row, tokenizer, scoring: PromptScoring | None) -> tuple[str, list[dict]]:
        """The prompt as it comes back before the completion (echo): its text (as sent, or decoded
        from the ids sent) and, with logprobs, each of its tokens with its logprob and the top k;
        the first token has null for both (nothing precedes it)."""
        active = row.job
        prompt = active.job.prompts[row.prompt_index]
        text = prompt if isinstance(prompt, str) else tokenizer.decode(row.prompt)
        k = active.params.get("logprobs")
        if k is None:
            return text, []
        first_choice = active.rows[row.prompt_index * active.params["n"]]
        scores = scoring.results[first_choice.batch_index]
        offsets = tokenizer.text_offsets(row.prompt)
        tokens = [{"token": tokenizer.piece(row.prompt[0]), "logprob": None, "top": None, "offset": 0}]
        for i, token in enumerate(row.prompt[1:]):
            entry = {"token": tokenizer.piece(token), "logprob": scores.logprobs[i], "offset": offsets[i + 1]}
            if k:
                top = {entry["token"]: entry["logprob"]}  # the prompt's own token, then the k most likely
                for alternative, value in zip(scores.top_ids[i][:k], scores.top_logprobs[i][:k], strict=True):
                    top.setdefault(tokenizer.piece(alternative), value)
                entry["top"] = top
            tokens.append(entry)
        return text, tokens

    def _drain(
        self, window, rows: list[Row], jobs: list[ActiveJob], tokenizer, top: int, scoring: PromptScoring | None
    ) -> None:
        """Move a window of steps to the host (one sync), feed each row, stream each job's text."""
        if window:
            ids = torch.stack([step.ids for step in window], dim=1).tolist()
            lps = (
                torch.stack([step.logprobs for step in window], dim=1).tolist()
                if window[0].logprobs is not None
                else None
            )
            if top:
                top_lps = torch.stack([step.top_logprobs for step in window], dim=1).tolist()
                top_ids = torch.stack([step.top_ids for step in window], dim=1).tolist()
        now = time.monotonic()
        outgoing, finished = {}, []
        for active in jobs:
            active.prefilled = True  # a drain follows the prefill (and its first step, if any)
            if active.ended:
                continue
            active.access_checked.wait(timeout=10)
            if active.stop_reason is not None:
                self._stop(active)
                continue
            if now > active.deadline:
                limit = settings.SANDBOX_JOB_TIME_LIMIT_SECONDS
                self._end(
                    active, JobStatus.FAILED, "timeout", 504, f"The request ran past the sandbox's limit of {limit} s."
                )
                continue
            choices = []
            chat = active.job.endpoint == JobEndpoint.CHAT
            for row in active.rows:
                if row.done or (row.started and not window):
                    continue
                text, tokens = "", []
                if not row.started:
                    row.started = True
                    if active.params.get("echo"):
                        text, tokens = self._echo(row, tokenizer, scoring)
                        row.echo_chars = len(text)
                r = row.batch_index
                for j, token in enumerate(ids[r] if window else ()):
                    if row.seq.completion.finish_reason:
                        break
                    completion = row.seq.completion
                    offset = row.echo_chars + len(completion.text) + len(row.seq.pending)
                    text += row.seq.push(token, lps[r][j] if lps else None)
                    # A completion lists every generated token, the eos that ended it too (its text
                    # is empty), as vLLM does: an evaluation reads the last entry as the generated
                    # one. A chat message's logprobs cover its content only, as OpenAI's do.
                    if chat and token == tokenizer.eos_id:
                        continue
                    entry = {"token": tokenizer.piece(token), "offset": offset}
                    if lps:
                        entry["logprob"] = lps[r][j]
                    if top and active.params.get("logprobs"):
                        k = active.params["logprobs"]
                        # Completions: the chosen token, then the k most likely; chat: the k most likely.
                        listed = {} if chat else {entry["token"]: entry.get("logprob")}
                        for alternative, value in zip(top_ids[r][j][:k], top_lps[r][j][:k], strict=True):
                            listed.setdefault(tokenizer.piece(alternative), value)
                        entry["top"] = listed
                    tokens.append(entry)
                reason = row.seq.completion.finish_reason
                if reason:
                    row.done = True
                if text or reason or tokens:
                    choice = {"index": row.index, "text": text, "finish_reason": reason}
                    if active.params.get("logprobs") is not None:
                        choice["tokens"] = tokens
                    choices.append(choice)
            if choices:
                if active.first_token_at is None:
                    active.first_token_at = timezone.now()
                outgoing[active.job.pk] = [{"type": "delta", "choices": choices}]
            if all(row.done for row in active.rows):
                finished.append(active)
        # Every job's new text in one round trip; then the jobs that ended, whose last event
        # must follow their text.
        if outgoing:
            self.transport.publish_many(outgoing)
        for active in finished:
            self._succeed(active)

    @staticmethod
    def _counts(active: ActiveJob) -> dict[str, int]:
        """Tokens a job that ends early has used: its prompts once the model read them (not when
        it failed before: a prompt refused as too long, a batch that failed), and what it
        generated so far."""
        return {
            "prompt_tokens": sum(len(row.prompt) for row in active.rows) if active.prefilled else 0,
            "completion_tokens": sum(len(row.seq.completion.tokens) for row in active.rows if row.seq is not None),
        }

    def _succeed(self, active: ActiveJob) -> None:
        rows = sorted(active.rows, key=lambda row: row.index)
        try:
            sandbox_job_succeed(
                job_id=active.job.pk,
                # The client got the text as generated; the record cannot hold NUL (jsonb): U+FFFD there.
                outputs=[row.seq.completion.text.replace("\x00", "\ufffd") for row in rows],
                finish_reasons=[row.seq.completion.finish_reason for row in rows],
                prompt_tokens=sum(len(row.prompt) for row in rows),
                completion_tokens=sum(len(row.seq.completion.tokens) for row in rows),
                first_token_at=active.first_token_at,
            )
        except Exception as exc:  # this job's record failed: end it alone, the batch goes on
            logger.exception("recording sandbox job %s failed", active.job.pk)
            self._end(active, JobStatus.FAILED, "server_error", 500, f"The sandbox could not record this job: {exc}")
            return
        active.ended = True
        self._release(active)

    # --- the watchman thread ----------------------------------------------------------------------

    def _watch(self) -> None:
        last_beat = 0.0
        while True:
            time.sleep(CANCEL_POLL_SECONDS)
            try:
                with self._cond:
                    running = dict(self._running)
                if not running:
                    continue
                ids = list(running)
                cancelled = SandboxJob.objects.filter(pk__in=ids, cancel_requested_at__isnull=False).values_list(
                    "pk", flat=True
                )
                for job_id in cancelled:
                    running[str(job_id)].stop_reason = (JobStatus.CANCELLED, "cancelled", 409)
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    SandboxJob.objects.filter(pk__in=ids, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
                    self._access_recheck(running.values())
            except Exception:  # the watchman must outlive a lost database connection
                logger.exception("sandbox watchman failed; retrying")
                close_old_connections()

    @staticmethod
    def _access_recheck(actives) -> None:
        """Revocation (or suspension, expiry, a leak hold) stops the running jobs it concerns."""
        verdicts = {}
        for active in actives:
            key = (active.job.user_id, active.job.variant_id)
            if key not in verdicts:
                _, _, refusal = sandbox_access(active.job.user, active.job.variant.slug)
                verdicts[key] = refusal
            if verdicts[key] is not None and active.stop_reason is None:
                active.stop_reason = (JobStatus.CANCELLED, "model_access_denied", 403)


_batcher: Batcher | None = None
_batcher_lock = threading.Lock()


def batcher_for_process(worker_name: str) -> Batcher:
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            _batcher = Batcher(worker_name=worker_name)
        return _batcher
