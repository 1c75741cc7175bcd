"""The inference sandbox end to end (ASGI server, broker, Celery worker, transport), against the engine
measured in this same process on the same weights.

A fresh database is migrated and seeded, a random LLaMA checkpoint (tiny_llama_make; by default dim
512, 8 layers, 8 heads, a 512-token vocabulary: 28M parameters) is published as the files of the
variant llama-demo-tiny to local weight storage, and researchers get an active grant and a personal
API token. Then, as real processes: uvicorn serving portal.asgi (one worker) and a sandbox worker
(`celery worker -Q <queue> --pool threads --concurrency 32`), on Redis for the broker and the token
transport, as in production: a private redis-server on a free port where the binary is installed (a
shared Redis is flushed by whoever clears the cache, the test suite before every test, which deletes
the streams of jobs in flight), else REDIS_URL or 127.0.0.1:6379, else the embedded defaults
(filesystem broker, file transport). Clients are threads of this process speaking raw HTTP/1.1 with
keep-alive (http.client), reading the server-sent events line by line as they arrive.

1. Serving overhead. Streaming completions (`POST /v1/completions`, stream: true) sent one at a time,
   --ttft-requests of them, a pause of --gap-ms after each: time to first token measured by the
   client, from sending the request to the first `data:` frame whose text is not empty. Reference: the
   engine's own time for the same prompt on the same weights, in this process, with the same threads:
   decode_steps until it yields its first step, its ids moved to the host (prefill + first sample).
   The two alternate request by request. Overhead = sandbox p50 - engine p50 (and the same at p90).
   Goal (issue 13): overhead p50 <= 20 ms. Each job's database timestamps (created, started by a
   worker, first text published) split the time to first token into stages, printed after the table;
   --probe splits it finer (below).
2. Throughput. 1, 8 and 32 clients stream completions at once, --requests-per-client each, back to
   back, temperature 0 and --max-tokens new tokens each (the prompts are chosen so that greedy
   decoding runs to max_tokens without meeting end-of-sequence, as the API has no ignore_eos, and
   without a NUL character, which PostgreSQL cannot store); aggregate tokens/s = completion tokens (the
   usage of the final chunk, stream_options.include_usage) over the wall time from the first request
   to the last [DONE]. Reference: the engine's generate() on a batch of the same size, same prompts,
   same max tokens, in this process (prefill included on both sides), run before and after the
   sandbox in each round, the faster of the two kept; the round with the median ratio is shown, with
   every round's ratio and the sizes of the batches the worker ran after the table. Goal: 8 clients
   >= 0.8 of the engine's batch-8 tokens/s.
3. Scoring (issue 16). What an evaluation sends: `POST /v1/completions` with a list of --score-batch
   token-id prompts of about --score-tokens ids each (lengths differ by a few ids), echo, max_tokens 0
   and logprobs 1, not streamed; 1 client sending --score-requests such requests back to back, then
   4 clients at once. Scoring throughput = prompt tokens scored (the usage's prompt_tokens, each
   choice checked to list every prompt token) over the wall time. Reference: the engine's score()
   (one prefill, log-probabilities and the top 1 of every position) on the same prompts as one batch,
   in this process, before and after the sandbox, the faster kept. No goal is set; the ratio is
   printed.

Torch runs with --threads intra-op threads in the worker (OMP_NUM_THREADS) and in this process (the
reference); the default, cores - 1, leaves a core to the ASGI server, Redis, PostgreSQL and the
clients. The worker runs the engine eagerly (it does not compile the decode step), so the reference
does too. The ASGI server runs with DATABASE_CONN_MAX_AGE 0 (--asgi-conn-max-age), the worker with 60.

--probe runs the server and the worker through benches/sandbox_probe.py, which wraps a few sandbox
functions to log when each was called and returned: the time to first token is then split stage by
stage (HTTP, token, access, job submit, broker, job start, batcher, prefill, transport, SSE), and the
worker's batches during the throughput rounds are listed with their sizes, durations and the gaps
between them. --load-memory-seconds (with --probe) is an experiment: it changes the worker's
LOAD_MEMORY_SECONDS, the batcher's memory of how many jobs arrive together.

    .venv/bin/python benches/sandbox.py [--smoke] [--probe] [--threads N] [--clients 1,8,32] [--rounds 3]
        [--requests-per-client 3] [--max-tokens 64] [--ttft-requests 40] [--gap-ms 100] [--users 1]
        [--dim 512 --layers 8 --heads 8 --vocab 512] [--batch-window-ms 25] [--load-memory-seconds S]
        [--score-batch 8] [--score-tokens 256] [--score-requests 4] [--files] [--keep-logs]

--smoke: a 2-layer dim-64 model, 1 and 4 clients, a few requests: checks that everything starts,
streams and cleans up, in about 30 s; its numbers say nothing about the goals. PostgreSQL: a
throwaway database on the server of DATABASE_URL, or on 127.0.0.1:5432 as user postgres when that
answers; SQLite otherwise. Processes, database, Redis keys and temporary files are removed at the
end, also on failure, Ctrl-C or SIGTERM. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from throwaway_database import database_url, drop_database  # noqa: E402 (benches/, beside this script)

GOAL_OVERHEAD_MS = 20.0
GOAL_RATIO_8 = 0.8
BENCH_DB = "portal_bench_sandbox"
VARIANT = "llama-demo-tiny"
PROMPT_TOKENS = 24  # every prompt has this many ids (bos included), so rows of a batch are alike
START_SECONDS = 90


class BenchError(Exception):
    pass


# --- Processes, database, broker -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def start_redis(tmp: Path) -> Service | None:
    """A private redis-server on a free port, where the binary is installed: a shared Redis is
    flushed by whoever clears the cache (the test suite does before every test), which deletes the
    token streams of jobs in flight and leaves their clients waiting."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    service = Service(
        "redis-server",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        dict(os.environ),
        tmp / "redis.log",
    )
    deadline = time.monotonic() + 10
    while not reachable("127.0.0.1", port):
        service.check()
        if time.monotonic() > deadline:
            service.stop()
            return None
        time.sleep(0.05)
    service.url = f"redis://127.0.0.1:{port}"
    return service


def redis_urls(private: str | None) -> tuple[str, str] | None:
    """(REDIS_URL, CELERY_BROKER_URL) when Redis answers, else None (embedded defaults)."""
    if private:
        cache, broker = f"{private}/1", f"{private}/2"
    else:
        cache = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/1"
        broker = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/2"
        if not broker.startswith("redis"):
            broker = cache
    try:
        import redis

        redis.Redis.from_url(cache, socket_timeout=2).ping()
        redis.Redis.from_url(broker, socket_timeout=2).ping()
    except Exception:  # noqa: BLE001 (no Redis: the embedded defaults)
        return None
    return cache, broker


def log_tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class Service:
    """A server process in a session of its own, logging to a file; stopped with its children."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path):
        self.name, self.log_path, self.url = name, log_path, ""
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def start_uvicorn(env: dict[str, str], port: int, log_path: Path, probe: bool) -> Service:
    app = ["--app-dir", str(ROOT / "benches"), "sandbox_probe:application"] if probe else ["portal.asgi:application"]
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    service = Service("uvicorn", command, env, log_path)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        service.check()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/livez")
            if conn.getresponse().status == 200:
                return service
        except OSError:
            time.sleep(0.2)
    service.stop()
    raise BenchError(f"uvicorn did not answer within {START_SECONDS} s:\n{log_tail(log_path)}")


def start_worker(env: dict[str, str], queue: str, concurrency: int, log_path: Path, probe: bool) -> Service:
    if probe:
        env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "benches"), str(ROOT), env.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "sandbox_probe" if probe else "portal",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ]
    service = Service("the sandbox worker", command, env, log_path)
    deadline = time.monotonic() + START_SECONDS
    while "ready." not in log_tail(log_path, 20000):
        service.check()
        if time.monotonic() > deadline:
            service.stop()
            raise BenchError(f"the sandbox worker was not ready in {START_SECONDS} s:\n{log_tail(log_path)}")
        time.sleep(0.2)
    return service


# --- The portal's data ------------------------------------------------------------------------------


def setup_portal(checkpoint: Path, users: int) -> list[str]:
    """Migrate, seed the catalog, publish the checkpoint as llama-demo-tiny's files, and give `users`
    researchers an active grant and a personal API token; returns their tokens' secrets."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0, interactive=False)
    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.distribution.publishing import weights_publish
    from access.grants.services import grant_accept_license, grant_create
    from access.seed import llama_release_seed
    from portal import roles
    from portal.services import api_token_create, user_create

    llama_release_seed()
    variant = ModelVariant.objects.get(slug=VARIANT)
    weights_publish(variant=variant, source_dir=checkpoint)
    reviewer = user_create(email="bench-reviewer@example.org", password=None, role=roles.REVIEWER, email_verified=True)
    secrets = []
    for index in range(users):
        with transaction.atomic():
            researcher = user_create(email=f"bench-researcher-{index}@example.org", password=None, email_verified=True)
            grant = grant_create(user=researcher, variant=variant, actor=reviewer, reason="sandbox benchmark")
            grant_accept_license(grant=grant, user=researcher, license_version=license_current(variant.family))
        secrets.append(api_token_create(user=researcher, name="sandbox benchmark")[1])
    return secrets


# --- Prompts and the engine reference --------------------------------------------------------------


def choose_prompts(model, tokenizer, count: int, max_tokens: int, seed: int = 0) -> list[list[int]]:
    """`count` prompts of PROMPT_TOKENS ids (bos first) whose greedy completion runs to max_tokens
    without end-of-sequence and whose first new token shows text at once (the stream's first frame)."""
    import torch

    from inference.llama.generate import SamplingParams, Sequence, generate

    generator = torch.Generator().manual_seed(seed)
    chosen: list[list[int]] = []
    for _ in range(50):
        candidates = [
            [tokenizer.bos_id] + torch.randint(3, tokenizer.n_words, (PROMPT_TOKENS - 1,), generator=generator).tolist()
            for _ in range(count)
        ]
        for prompt, completion in zip(
            candidates, generate(model, tokenizer, candidates, SamplingParams(max_new_tokens=max_tokens)), strict=True
        ):
            first_text = (
                Sequence(tokenizer, prompt, SamplingParams(max_new_tokens=max_tokens)).push(completion.tokens[0], None)
                if completion.tokens
                else ""
            )
            # No NUL in the text: PostgreSQL's jsonb refuses \u0000, and the worker fails the whole batch
            # when it cannot store one job's output (see the report of this bench).
            if (
                completion.finish_reason == "length"
                and len(completion.tokens) == max_tokens
                and first_text
                and "\x00" not in completion.text
            ):
                chosen.append(prompt)
        if len(chosen) >= count:
            return chosen[:count]
    raise BenchError(f"found only {len(chosen)} prompts that run to {max_tokens} tokens; try another --seed or model")


def engine_first_token(model, prompt: list[int], max_tokens: int) -> float:
    """Seconds until decode_steps yields its first step, its ids on the host: prefill + first sample."""
    from inference.llama.generate import SamplingParams, decode_steps

    start = time.perf_counter()
    steps = decode_steps(model, [prompt], SamplingParams(max_new_tokens=max_tokens))
    next(steps).ids.tolist()
    elapsed = time.perf_counter() - start
    steps.close()
    return elapsed


def engine_score(model, prompts: list[list[int]]) -> tuple[int, float]:
    """(prompt tokens, seconds) of the engine's score() on this batch with the top 1 per position,
    as the API is asked (logprobs 1)."""
    from inference.llama.generate import score

    start = time.perf_counter()
    score(model, prompts, top_k=1)
    return sum(len(p) for p in prompts), time.perf_counter() - start


def scoring_prompts(vocab: int, count: int, length: int, seed: int) -> list[list[int]]:
    """count prompts of about length ids (each a few shorter than the last, so a batch mixes
    lengths), random ids of the vocabulary past the special ones: scoring reads any ids."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (max(2, length - 3 * i),), generator=generator).tolist() for i in range(count)]


def engine_batch(model, tokenizer, prompts: list[list[int]], max_tokens: int) -> tuple[int, float]:
    """(new tokens, seconds) of the engine's generate() on this batch, prefill included."""
    from inference.llama.generate import SamplingParams, generate

    start = time.perf_counter()
    completions = generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=max_tokens))
    elapsed = time.perf_counter() - start
    return sum(len(c.tokens) for c in completions), elapsed


# --- Clients ----------------------------------------------------------------------------------------


@dataclass
class Stream:
    job_id: str
    sent_wall: float  # time.time() when the request went out (comparable with the database's timestamps)
    first_text_s: float  # seconds from sending to the first frame with text
    total_s: float
    completion_tokens: int
    finish_reasons: list = field(default_factory=list)


class Client:
    """One keep-alive HTTP/1.1 connection to the ASGI server, streaming completions."""

    def __init__(self, port: int, secret: str, timeout: float):
        self.port, self.secret, self.timeout = port, secret, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.in_flight = ""  # the job of the stream being read, for the report of a stream that stalls
        self.frames = 0

    def _post(self, body: bytes, waiting: str) -> tuple[http.client.HTTPResponse, float, float]:
        """POST /v1/completions on the keep-alive connection (opened again once if the server closed
        it meanwhile); the response, and the wall and monotonic times the request went out."""
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            sent_wall, start = time.time(), time.perf_counter()
            self.in_flight, self.frames = waiting, 0
            try:
                self.conn.request("POST", "/v1/completions", body=body, headers=headers)
                return self.conn.getresponse(), sent_wall, start
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def complete(self, prompt: list[int], max_tokens: int) -> Stream:
        body = json.dumps(
            {
                "model": VARIANT,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        response, sent_wall, start = self._post(body, "(no response headers yet)")
        if response.status != 200:
            raise BenchError(f"POST /v1/completions: {response.status} {response.read()[:500]!r}")
        job_id = self.in_flight = response.getheader("X-Sandbox-Job", "")
        self.frames = 0
        first = None
        usage = None
        reasons = []
        while True:
            line = response.readline()
            if not line:
                raise BenchError("the stream ended without data: [DONE]")
            if not line.startswith(b"data: "):
                continue
            self.frames += 1
            data = line[6:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise BenchError(f"error event: {chunk['error']}")
            for choice in chunk.get("choices") or ():
                if choice.get("text") and first is None:
                    first = time.perf_counter() - start
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
            if chunk.get("usage"):
                usage = chunk["usage"]
        response.read()  # the end of the chunked body, so the connection can carry the next request
        self.in_flight = ""
        total = time.perf_counter() - start
        if usage is None:
            raise BenchError("the stream had no usage chunk (stream_options.include_usage)")
        return Stream(
            job_id, sent_wall, first if first is not None else total, total, usage["completion_tokens"], reasons
        )

    def score(self, prompts: list[list[int]]) -> int:
        """Score prompts as an evaluation does (echo, max_tokens 0, logprobs 1, not streamed); the
        prompt tokens scored, each choice checked to list all of its prompt's tokens."""
        body = json.dumps(
            {"model": VARIANT, "prompt": prompts, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}
        ).encode()
        response, _, _ = self._post(body, "(scoring: no response yet)")
        payload = response.read()
        self.in_flight = ""
        if response.status != 200:
            raise BenchError(f"POST /v1/completions (scoring): {response.status} {payload[:500]!r}")
        result = json.loads(payload)
        for choice in result["choices"]:
            if len(choice["logprobs"]["token_logprobs"]) != len(prompts[choice["index"]]):
                raise BenchError(f"choice {choice['index']} lists {len(choice['logprobs']['token_logprobs'])} "
                                 f"tokens of a {len(prompts[choice['index']])}-token prompt")  # fmt: skip
        return result["usage"]["prompt_tokens"]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_clients(
    clients: list[Client], prompts: list[list[int]], max_tokens: int, requests: int
) -> tuple[float, list[Stream]]:
    """Every client streams `requests` completions back to back, all starting together; returns
    (wall seconds from the first request to the last [DONE], every stream)."""
    barrier = threading.Barrier(len(clients) + 1)
    results: list[list[Stream]] = [[] for _ in clients]
    errors: list[BaseException] = []

    def work(index: int):
        barrier.wait()
        try:
            for _ in range(requests):
                results[index].append(clients[index].complete(prompts[index % len(prompts)], max_tokens))
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise BenchError(f"{len(errors)} client(s) failed, first: {errors[0]!r}\n" + stalled_report(clients))
    return elapsed, [s for per_client in results for s in per_client]


def bench_teardown(
    *,
    services: list[Service],
    admin_url: str | None,
    database: str,
    tmp: Path,
    keep_logs: bool,
    shared_redis: tuple[str, str] | None,
    queue: str,
    stream_keys: list[str] = (),
) -> None:
    """After a bench, even a failed one: stop its processes, drop its database, delete what it left
    in a Redis it shared with others (``shared_redis``: the cache and broker URLs; the bench's queue
    and streams), and remove its folder unless ``keep_logs``. Each step goes on if one before fails."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for service in reversed(services):
        service.stop()
    try:
        from django.db import connections

        connections.close_all()
    except Exception as exc:  # noqa: BLE001 (cleanup goes on)
        print(f"closing database connections: {exc!r}", file=sys.stderr)
    drop_database(admin_url, database)
    if shared_redis is not None:
        try:
            import redis

            redis.Redis.from_url(shared_redis[1]).delete(queue)
            if stream_keys:
                redis.Redis.from_url(shared_redis[0]).delete(*stream_keys)
        except Exception as exc:  # noqa: BLE001 (cleanup goes on)
            print(f"deleting the bench's queue and streams from Redis: {exc!r}", file=sys.stderr)
    if keep_logs:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def stalled_report(clients: list[Client]) -> str:
    """What the database and the transport know of the streams that clients were still reading."""
    from django.conf import settings

    from inference.sandbox.models import SandboxJob

    lines = []
    for client in clients:
        if not client.in_flight:
            continue
        job = (
            SandboxJob.objects.filter(pk=client.in_flight).first()
            if client.frames or client.in_flight[0] != "("
            else None
        )
        events = "?"
        try:
            if settings.SANDBOX_TRANSPORT == "redis":
                import redis

                entries = redis.Redis.from_url(settings.REDIS_URL).xrange(f"sandbox:job:{client.in_flight}")
                events = [json.loads(fields[b"e"])["type"] for _, fields in entries]
        except Exception as exc:  # noqa: BLE001
            events = repr(exc)
        lines.append(
            f"  job {client.in_flight}: {client.frames} frames read; status "
            f"{job.status if job else '?'}, finished {job.finished_at if job else '?'}; stream events {events}"
        )
    return "streams still being read:\n" + "\n".join(lines) if lines else "no stream was being read"


# --- Reporting --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stage_breakdown(streams: list[Stream]) -> dict[str, list[float]]:
    """Milliseconds of each stage of the time to first token, from the jobs' database timestamps
    (every process's clock is this machine's)."""
    from inference.sandbox.models import SandboxJob

    jobs = {str(j.pk): j for j in SandboxJob.objects.filter(pk__in=[s.job_id for s in streams])}
    stages: dict[str, list[float]] = {"admit": [], "pickup": [], "worker": [], "deliver": []}
    for s in streams:
        job = jobs.get(s.job_id)
        if job is None or not (job.started_at and job.first_token_at):
            continue
        created, started, first = (t.timestamp() for t in (job.created_at, job.started_at, job.first_token_at))
        stages["admit"].append((created - s.sent_wall) * 1e3)
        stages["pickup"].append((started - created) * 1e3)
        stages["worker"].append((first - started) * 1e3)
        stages["deliver"].append((s.sent_wall + s.first_text_s - first) * 1e3)
    return stages


def batch_sizes(streams: list[Stream], gap_ms: float) -> list[int]:
    """Jobs per batch the worker ran, from when each job's first text was published: the jobs of
    one batch publish theirs in one pass, batches are at least a prefill apart."""
    from inference.sandbox.models import SandboxJob

    times = sorted(
        t.timestamp()
        for t in SandboxJob.objects.filter(pk__in=[s.job_id for s in streams])
        .exclude(first_token_at=None)
        .values_list("first_token_at", flat=True)
    )
    sizes: list[int] = []
    last = None
    for t in times:
        if last is None or (t - last) * 1e3 > gap_ms:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


# --- The bench --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, few requests: checks that it runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) - 1),
        help="torch intra-op threads of the worker and of the reference (default: cores - 1)",
    )
    parser.add_argument("--clients", default=None, help="concurrent clients, comma-separated (default 1,8,32)")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds per client count (default 3)")
    parser.add_argument("--requests-per-client", type=int, default=None, help="per round (default 3)")
    parser.add_argument("--max-tokens", type=int, default=None, help="new tokens per throughput request (default 64)")
    parser.add_argument("--ttft-requests", type=int, default=None, help="(default 40)")
    parser.add_argument("--ttft-max-tokens", type=int, default=16)
    parser.add_argument("--gap-ms", type=float, default=100.0, help="pause after each time-to-first-token request")
    parser.add_argument(
        "--users",
        type=int,
        default=1,
        help="researchers the clients are spread over (each has a token; default 1, all clients one user)",
    )
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=None,
        help="SANDBOX_BATCH_WINDOW_MS for the worker (default: the setting's default)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="the worker's Celery threads")
    parser.add_argument(
        "--asgi-conn-max-age",
        type=int,
        default=0,
        help="DATABASE_CONN_MAX_AGE of the ASGI server (default 0, as Django advises under ASGI)",
    )
    parser.add_argument("--files", action="store_true", help="filesystem broker and file transport even if Redis is up")
    parser.add_argument("--client-timeout", type=float, default=120.0, help="seconds a client waits for a frame")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run the server and the worker with timing probes (benches/sandbox_probe.py) and print "
        "where the time goes, stage by stage",
    )
    parser.add_argument(
        "--load-memory-seconds",
        type=float,
        default=None,
        help="experiment (with --probe): set the worker's LOAD_MEMORY_SECONDS, how long its batcher "
        "remembers how many jobs arrived together (2 s in worker.py)",
    )
    parser.add_argument("--score-batch", type=int, default=8, help="prompts per scoring request (default 8)")
    parser.add_argument("--score-tokens", type=int, default=None, help="ids per scoring prompt (default 256)")
    parser.add_argument("--score-requests", type=int, default=None, help="scoring requests per client (default 4)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary folder (server and worker logs)")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    if opts.load_memory_seconds is not None and not opts.probe:
        parser.error("--load-memory-seconds needs --probe (the probe sets it in the worker)")
    smoke = opts.smoke
    levels = [int(c) for c in (opts.clients or ("1,4" if smoke else "1,8,32")).split(",")]
    rounds = opts.rounds or (1 if smoke else 3)
    per_client = opts.requests_per_client or (1 if smoke else 3)
    max_tokens = opts.max_tokens or (16 if smoke else 64)
    ttft_requests = opts.ttft_requests or (5 if smoke else 40)
    score_tokens = opts.score_tokens or (48 if smoke else 256)
    score_requests = opts.score_requests or (1 if smoke else 4)
    dim = opts.dim or (64 if smoke else 512)
    layers = opts.layers or (2 if smoke else 8)
    heads = opts.heads or (4 if smoke else 8)
    users = max(1, min(opts.users, max(levels)))
    started = time.perf_counter()
    load_before = os.getloadavg()[0]

    tmp = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    admin_url = None
    services: list[Service] = []
    redis_cleanup: tuple[str, str] | None = None
    redis_server = None
    queue = f"bench-sandbox-{uuid.uuid4().hex[:8]}"
    all_streams: list[Stream] = []
    clients: list[Client] = []

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (a `&` job)
    try:
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)  # before torch loads in this process
        import torch

        torch.set_num_threads(opts.threads)
        from inference.llama.checkpoint import load_llama, tiny_llama_make
        from inference.llama.tokenizer import Tokenizer

        server = os.environ.get("DATABASE_URL", "")
        if not server and reachable("127.0.0.1", 5432):
            server = "postgres://postgres@127.0.0.1:5432/postgres"
        db_url, admin_url = database_url(tmp, BENCH_DB, server=server)
        redis_server = None if opts.files else start_redis(tmp)
        if redis_server is not None:
            services.append(redis_server)
        broker = None if opts.files else redis_urls(redis_server.url if redis_server else None)
        env = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "PORTAL_VAR_DIR": str(tmp / "var"),
            "DATABASE_URL": db_url,
            "DATABASE_CONN_MAX_AGE": "60",  # persistent connections, as in production
            "PORTAL_STORAGE_BACKEND": "local",
            "PORTAL_STORAGE_ROOT": str(tmp / "storage"),
            "SANDBOX_QUEUE": queue,
            "SANDBOX_CACHE_DIR": str(tmp / "sandbox-cache"),
            "SANDBOX_STREAM_DIR": str(tmp / "sandbox-streams"),
            "SANDBOX_DEVICE": "cpu",
            "SANDBOX_MAX_BATCH": "32",
            # The bench's clients are few researchers sending many requests: quotas out of the way.
            "SANDBOX_CONCURRENT_REQUESTS": "1000",
            "SANDBOX_REQUESTS_PER_MINUTE": "1000000",
            "SANDBOX_TOKENS_PER_DAY": str(10**12),
            "SANDBOX_QUEUE_LIMIT": "10000",
            "OMP_NUM_THREADS": str(opts.threads),
            "MKL_NUM_THREADS": str(opts.threads),
            "PYTHONUNBUFFERED": "1",
        }
        if broker is not None:
            env.update({"REDIS_URL": broker[0], "CELERY_BROKER_URL": broker[1], "SANDBOX_TRANSPORT": "redis"})
            redis_cleanup = broker
        else:
            env.update({"REDIS_URL": "", "CELERY_BROKER_URL": "filesystem://", "SANDBOX_TRANSPORT": "files"})
        if opts.batch_window_ms is not None:
            env["SANDBOX_BATCH_WINDOW_MS"] = str(opts.batch_window_ms)
        os.environ.update(env)

        print(f"checkpoint: dim {dim}, {layers} layers, {heads} heads, vocab {opts.vocab} ...", flush=True)
        checkpoint = tiny_llama_make(
            tmp / "checkpoint" / VARIANT,
            dim=dim,
            n_layers=layers,
            n_heads=heads,
            vocab_size=opts.vocab,
            multiple_of=32 if smoke else 256,
            seed=opts.seed,
        )
        print("database, catalog, publishing, researchers ...", flush=True)
        secrets = setup_portal(checkpoint, users)

        # The engine in this process: the same files, dtype and device as the worker's registry loads.
        model = load_llama(checkpoint, dtype=torch.float32, device="cpu")
        tokenizer = Tokenizer(checkpoint / "tokenizer.model")
        n_params = sum(p.numel() for p in model.parameters())
        prompts = choose_prompts(model, tokenizer, max(levels), max(max_tokens, opts.ttft_max_tokens), opts.seed)

        print("starting uvicorn and the sandbox worker ...", flush=True)
        child_env = {**os.environ, **env}
        port = free_port()
        # Django keeps no persistent connections under ASGI: each request's sync code runs in a thread
        # of its own, and a connection kept by such a thread outlives it (PostgreSQL runs out of
        # connections within minutes). The worker, a long-lived thread pool, keeps its connections.
        asgi_env = {**child_env, "DATABASE_CONN_MAX_AGE": str(opts.asgi_conn_max_age)}
        if opts.load_memory_seconds is not None:
            child_env["SANDBOX_PROBE_LOAD_MEMORY_SECONDS"] = str(opts.load_memory_seconds)
        if opts.probe:
            (tmp / "probe").mkdir()
            asgi_env["SANDBOX_PROBE_DIR"] = child_env["SANDBOX_PROBE_DIR"] = str(tmp / "probe")
        services.append(start_uvicorn(asgi_env, port, tmp / "uvicorn.log", opts.probe))
        services.append(start_worker(child_env, queue, opts.concurrency, tmp / "worker.log", opts.probe))

        clients = [Client(port, secrets[i % len(secrets)], opts.client_timeout) for i in range(max(levels))]
        # Warm-up: the first request fetches and loads the weights; then each batch size once.
        first = clients[0].complete(prompts[0], opts.ttft_max_tokens)
        print(f"first request (loads the model in the worker): {first.total_s:.1f} s", flush=True)
        for level in levels:
            run_clients(clients[:level], prompts, max_tokens, 1)
        for _ in range(3):
            engine_first_token(model, prompts[0], opts.ttft_max_tokens)
            clients[0].complete(prompts[0], opts.ttft_max_tokens)
        from inference.sandbox.worker import LOAD_MEMORY_SECONDS  # the worker's own value, not a copy

        # Between phases the batcher forgets the group sizes it saw (a smoke run does not wait: its
        # numbers mean nothing anyway).
        forget = 0.5 if smoke else max(LOAD_MEMORY_SECONDS, opts.load_memory_seconds or 0) + 0.5
        time.sleep(forget)  # the batcher forgets the warm-up's group sizes

        # 1. Time to first token, request by request, alternating with the engine's own.
        print(f"time to first token: {ttft_requests} requests ...", flush=True)
        ttft, prefill, ttft_streams = [], [], []
        for index in range(ttft_requests):
            prompt = prompts[index % len(prompts)]
            prefill.append(engine_first_token(model, prompt, opts.ttft_max_tokens))
            stream = clients[0].complete(prompt, opts.ttft_max_tokens)
            ttft.append(stream.first_text_s)
            ttft_streams.append(stream)
            time.sleep(opts.gap_ms / 1000)
        stages = stage_breakdown(ttft_streams)
        all_streams += ttft_streams

        # 2. Throughput, engine then sandbox in each round.
        throughput = {}
        for level in levels:
            time.sleep(forget)
            level_rounds = []
            for number in range(rounds):
                tokens, seconds = engine_batch(model, tokenizer, prompts[:level], max_tokens)
                elapsed, streams = run_clients(clients[:level], prompts, max_tokens, per_client)
                # The engine again after the sandbox, the faster of the two kept: other work on the
                # machine that slows one engine run down does not flatter the sandbox's ratio.
                tokens_after, seconds_after = engine_batch(model, tokenizer, prompts[:level], max_tokens)
                engine_tps = max(tokens / seconds, tokens_after / seconds_after)
                all_streams += streams
                served = sum(s.completion_tokens for s in streams)
                expected = level * per_client * max_tokens
                if served != expected or any(r != ["length"] for r in (s.finish_reasons for s in streams)):
                    print(f"  note: {served} completion tokens served, {expected} expected", flush=True)
                sandbox_tps = served / elapsed
                level_rounds.append((sandbox_tps / engine_tps, sandbox_tps, engine_tps, streams, seconds))
                print(
                    f"  {level} client(s), round {number + 1}: sandbox {sandbox_tps:,.0f} tok/s, "
                    f"engine batch {level} {engine_tps:,.0f} tok/s, ratio {sandbox_tps / engine_tps:.2f}",
                    flush=True,
                )
            level_rounds.sort(key=lambda r: r[0])
            throughput[level] = level_rounds
        # 3. Scoring: 1 client, then 4 at once, engine before and after in each round.
        print("scoring ...", flush=True)
        score_batch = scoring_prompts(opts.vocab, opts.score_batch, score_tokens, opts.seed)
        scoring = {}
        for level in (1, 4):
            time.sleep(forget)  # a lone client is not made to wait for the group of the rounds before
            level_rounds = []
            for _ in range(rounds):
                reference = score_batch * level  # the worker batches the clients' requests together
                tokens, seconds = engine_score(model, reference)
                barrier = threading.Barrier(level + 1)
                scored: list[int] = []
                failures: list[BaseException] = []

                def score_work(client):
                    barrier.wait()
                    try:
                        for _ in range(score_requests):
                            scored.append(client.score(score_batch))
                    except BaseException as exc:  # noqa: BLE001 (reported below)
                        failures.append(exc)

                threads = [threading.Thread(target=score_work, args=(c,), daemon=True) for c in clients[:level]]
                for thread in threads:
                    thread.start()
                barrier.wait()
                start = time.perf_counter()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - start
                if failures:
                    raise BenchError(f"scoring failed: {failures[0]!r}")
                tokens_after, seconds_after = engine_score(model, reference)
                engine_tps = max(tokens / seconds, tokens_after / seconds_after)
                sandbox_tps = sum(scored) / elapsed
                level_rounds.append((sandbox_tps / engine_tps, sandbox_tps, engine_tps))
                print(
                    f"  scoring, {level} client(s): sandbox {sandbox_tps:,.0f} prompt tok/s, engine "
                    f"{engine_tps:,.0f}, ratio {sandbox_tps / engine_tps:.2f}",
                    flush=True,
                )
            scoring[level] = sorted(level_rounds)
        for client in clients:
            client.close()

        batches = {level: batch_sizes([s for r in throughput[level] for s in r[3]], gap_ms=5.0) for level in levels}
        from django.db.models import Count

        from inference.sandbox.models import JobStatus, SandboxJob

        job_counts = dict(SandboxJob.objects.values_list("status").annotate(n=Count("id")))
        probe = probe_read(tmp / "probe") if opts.probe else None
        failed = sum(n for status, n in job_counts.items() if status != JobStatus.SUCCEEDED)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    except (BenchError, OSError) as exc:
        if clients and not isinstance(exc, BenchError):
            print(stalled_report(clients), file=sys.stderr)
        for service in services:
            print(f"--- {service.name} log ---\n{log_tail(service.log_path)}", file=sys.stderr)
        raise SystemExit(f"bench failed: {exc}") from None
    finally:
        bench_teardown(
            services=services, admin_url=admin_url, database=BENCH_DB, tmp=tmp, keep_logs=opts.keep_logs,
            shared_redis=redis_cleanup if redis_server is None else None, queue=queue,
            stream_keys=[f"sandbox:job:{s.job_id}" for s in all_streams if s.job_id],
        )  # fmt: skip

    # --- The table ---------------------------------------------------------------------------------
    ms = 1e3
    overhead50 = (percentile(ttft, 0.5) - percentile(prefill, 0.5)) * ms
    overhead90 = (percentile(ttft, 0.9) - percentile(prefill, 0.9)) * ms
    transport = (
        f"Redis ({'a private redis-server' if redis_server else 'shared'}: broker and Streams)"
        if broker
        else "embedded (filesystem broker, file transport)"
    )
    from django.conf import settings

    window = settings.SANDBOX_BATCH_WINDOW_MS  # the workers' value: the same environment
    print()
    print(
        f"{'SMOKE RUN (tiny sizes; says nothing about the goals): ' if smoke else ''}"
        f"model dim {dim}, {layers} layers, {heads} heads, vocab {opts.vocab} ({n_params / 1e6:.1f}M parameters, "
        f"float32, CPU, eager); torch {torch.__version__}, {opts.threads} thread(s) in the worker and the "
        f"reference, {os.cpu_count()} cores; uvicorn (1 worker) + celery worker (--pool threads "
        f"--concurrency {opts.concurrency}); transport {transport}; database {db_url.split(':')[0]}; "
        f"SANDBOX_BATCH_WINDOW_MS {window:g}; "
        f"{f'EXPERIMENT: the worker LOAD_MEMORY_SECONDS {opts.load_memory_seconds:g}; ' if opts.load_memory_seconds is not None else ''}"
        f"{len(secrets)} researcher(s). Prompts: {PROMPT_TOKENS} token ids. "
        f"Time to first token: {ttft_requests} streaming requests of max_tokens {opts.ttft_max_tokens}, one at a "
        f"time, {opts.gap_ms:g} ms apart. Throughput: {per_client} request(s) per client per round, max_tokens "
        f"{max_tokens}, temperature 0, every completion to length; {rounds} round(s), the round with the median "
        "ratio shown. Load average (1 min) "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: other work on this machine skews "
        "both columns."
    )
    print()
    print("| measure | sandbox | engine reference | overhead / ratio | goal | met? |")
    print("|---|---:|---:|---:|---|---|")
    print(
        f"| time to first token p50 (ms) | {percentile(ttft, 0.5) * ms:.1f} | {percentile(prefill, 0.5) * ms:.1f} | "
        f"+{overhead50:.1f} ms | overhead <= {GOAL_OVERHEAD_MS:g} ms | "
        f"{'met' if overhead50 <= GOAL_OVERHEAD_MS else 'NOT met'} |"
    )
    print(
        f"| time to first token p90 (ms) | {percentile(ttft, 0.9) * ms:.1f} | {percentile(prefill, 0.9) * ms:.1f} | "
        f"+{overhead90:.1f} ms | | |"
    )
    for level in levels:
        level_rounds = throughput[level]
        ratio, sandbox_tps, engine_tps, _, _ = level_rounds[len(level_rounds) // 2]
        goal, met = "", ""
        if level == 8:
            goal, met = f">= {GOAL_RATIO_8:g} of engine", "met" if ratio >= GOAL_RATIO_8 else "NOT met"
        noun = "client" if level == 1 else "clients"
        print(
            f"| {level} {noun} streaming, tokens/s (engine: batch {level}) | {sandbox_tps:,.0f} | {engine_tps:,.0f} | "
            f"{ratio:.2f} | {goal} | {met} |"
        )
    for level, level_rounds in scoring.items():
        ratio, sandbox_tps, engine_tps = level_rounds[len(level_rounds) // 2]
        noun = "client" if level == 1 else "clients"
        print(
            f"| scoring (echo, max_tokens 0), {level} {noun}: prompt tokens/s (engine: score() of "
            f"{opts.score_batch * level} prompts) | {sandbox_tps:,.0f} | {engine_tps:,.0f} | {ratio:.2f} | | |"
        )
    print()
    print(
        f"scoring: {opts.score_batch} prompts of {score_tokens - 3 * (opts.score_batch - 1)} to {score_tokens} ids "
        f"per request, logprobs 1, {score_requests} request(s) per client per round; every round's ratio: "
        + "; ".join(f"{level} client(s) " + ", ".join(f"{r[0]:.2f}" for r in rs) for level, rs in scoring.items())
    )
    print()
    print("where the time to first token goes (from each job's database timestamps; ms):")
    print()
    print("| stage | p50 | p90 |")
    print("|---|---:|---:|")
    labels = {
        "admit": "client sends -> job row created (HTTP, ASGI, token, access, quotas)",
        "pickup": "job created -> started by the worker (commit, broker, Celery pick-up, job start)",
        "worker": "started -> first text published (batcher hand-off, batch window, weights check, prefill, first step)",
        "deliver": "first text published -> client has it (transport, ASGI, SSE)",
    }
    for key, label in labels.items():
        print(f"| {label} | {percentile(stages[key], 0.5):.1f} | {percentile(stages[key], 0.9):.1f} |")
    print(
        f"| of the worker's stage: the engine's prefill + first step (reference) | {percentile(prefill, 0.5) * ms:.1f} "
        f"| {percentile(prefill, 0.9) * ms:.1f} |"
    )
    print()
    print("every round's ratio, lowest first, and the batches the worker ran (jobs per batch):")
    for level in levels:
        sizes = batches[level]
        print(
            f"  {level} client(s): {', '.join(f'{r[0]:.2f}' for r in throughput[level])}; "
            f"{len(sizes)} batches, sizes {summarise(sizes)}"
        )
    if failed:
        print(f"jobs not succeeded: {failed} ({job_counts})")
    if probe is not None:
        probe_report(probe, ttft_streams, prefill, throughput)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


# --- The probe's report (--probe) -------------------------------------------------------------------


def probe_read(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def probe_report(records: list[dict], ttft_streams: list[Stream], prefill: list[float], throughput: dict) -> None:
    """Stage by stage, from the probes' clocks (every process's clock is this machine's)."""
    by_job: dict[str, dict] = {}
    batches = []
    for r in records:
        kind = r["kind"]
        if kind == "worker.take_batch" or kind == "worker.run_batch":
            batches.append(r)
            if kind == "worker.run_batch" and len(r["jobs"]) == 1:
                by_job.setdefault(str(r["jobs"][0]), {})["run_batch"] = r
            if kind == "worker.take_batch":
                for job in r["jobs"]:
                    by_job.setdefault(str(job), {})["take_batch"] = r
        elif r.get("job") is not None:
            by_job.setdefault(str(r["job"]), {})[kind] = r

    def span(record: dict, label: str) -> tuple[float, float] | None:
        found = [s for s in record.get("spans", ()) if s[0] == label]
        return (found[0][1], found[-1][2]) if found else None

    def spent(record: dict, label: str) -> float:
        """Seconds in all the spans of this label (they may nest: publish inside drain)."""
        return sum(s[2] - s[1] for s in record.get("spans", ()) if s[0] == label)

    stages: dict[str, list[float]] = {}

    def add(name: str, seconds: float | None) -> None:
        if seconds is not None:
            stages.setdefault(name, []).append(seconds * 1e3)

    for stream in ttft_streams:
        j = by_job.get(stream.job_id, {})
        admit, received, start = j.get("web.admit"), j.get("worker.received"), j.get("worker.job_start")
        handoff, take, run = j.get("worker.handoff"), j.get("take_batch"), j.get("run_batch")
        publish, event = j.get("worker.first_publish"), j.get("web.first_event")
        if not all((admit, received, start, handoff, take, run, publish, event)):
            continue
        send = span(admit, "send_task")
        prefill_span = span(run, "prefill")
        add(
            "client sends -> the view's sync code starts (HTTP/h11, Django's ASGI handler, thread hop)",
            admit["start"] - stream.sent_wall,
        )
        for label, text in (
            ("token", "  API token check"),
            ("access", "  grant/access check"),
            ("submit", "  sandbox_job_submit (quotas, insert, commit, send_task)"),
        ):
            found = span(admit, label)
            add(text, found and found[1] - found[0])
        add("    of which send_task (Celery publish to the broker)", send and send[1] - send[0])
        add("admission, all of it", admit["end"] - admit["start"])
        add("broker: send_task done -> worker received the message", send and received["at"] - send[1])
        add("worker: received -> task thread starts sandbox_job_start", start["start"] - received["at"])
        add("worker: sandbox_job_start (queued -> running, the job row)", start["end"] - start["start"])
        add(
            "worker: task hands the job to the batcher -> batch taken (incl. batch window)", take["end"] - handoff["at"]
        )
        for label in ("checkpoint_fetch", "registry", "record_progress"):
            found = span(run, label)
            add(f"worker: {label}", found and found[1] - found[0])
        add(
            "worker: prefill + first step (decode_steps' first yield)",
            prefill_span and prefill_span[1] - prefill_span[0],
        )
        add(
            "worker: first step -> publishes the first text (waits for the access check beside the prefill)",
            prefill_span and publish["start"] - prefill_span[1],
        )
        add("transport: publish (XADD) called -> the web process has read it", event["at"] - publish["start"])
        add(
            "web process has it -> client has the frame (SSE, ASGI, h11, client)",
            stream.sent_wall + stream.first_text_s - event["at"],
        )

    print()
    print("where the time to first token goes, from the probes (ms; p50 over the time-to-first-token requests):")
    print()
    print("| stage | p50 | p90 | requests where it ran |")
    print("|---|---:|---:|---:|")
    for name, values in stages.items():
        print(f"| {name} | {percentile(values, 0.5):.1f} | {percentile(values, 0.9):.1f} | {len(values)} |")
    print(
        f"| (engine reference, this process: prefill + first step) | {percentile(prefill, 0.5) * 1e3:.1f} | "
        f"{percentile(prefill, 0.9) * 1e3:.1f} |"
    )

    # Throughput: how busy the worker's device was, and what it waited for between batches.
    runs = sorted((r for r in batches if r["kind"] == "worker.run_batch"), key=lambda r: r["start"])
    takes = sorted((r for r in batches if r["kind"] == "worker.take_batch"), key=lambda r: r["end"])
    print()
    print("the worker during the throughput rounds (from the probes):")
    for level, level_rounds in throughput.items():
        wall = busy = 0.0
        sizes, gaps, waits = [], [], []
        durations: dict[int, list[float]] = {}
        draining: dict[int, list[float]] = {}
        publishing: dict[int, list[float]] = {}
        for round_ in level_rounds:  # each round alone: the engine reference ran between rounds
            streams = round_[3]
            jobs = {s.job_id for s in streams}
            mine = [r for r in runs if any(str(j) in jobs for j in r["jobs"])]
            if not mine:
                continue
            wall += max(s.sent_wall + s.total_s for s in streams) - min(s.sent_wall for s in streams)
            busy += sum(r["end"] - r["start"] for r in mine)
            sizes += [len(r["jobs"]) for r in mine]
            for r in mine:
                durations.setdefault(len(r["jobs"]), []).append(r["end"] - r["start"])
                draining.setdefault(len(r["jobs"]), []).append(spent(r, "drain") / (r["end"] - r["start"]))
                publishing.setdefault(len(r["jobs"]), []).append(spent(r, "publish") / (r["end"] - r["start"]))
            gaps += [b["start"] - a["end"] for a, b in itertools.pairwise(mine)]
            waits += [t["end"] - t["start"] for t in takes if any(str(j) in jobs for j in t["jobs"])]
        if not sizes:
            continue
        print(
            f"  {level} client(s): {len(sizes)} batches, {sum(sizes) / len(sizes):.1f} jobs each on average "
            f"(sizes {summarise(sizes)}); the worker ran batches {busy / wall:.0%} of the rounds' wall time; "
            f"from one batch's end to the next one's start p50 {percentile(gaps, 0.5) * 1e3:.0f} ms, p90 "
            f"{percentile(gaps, 0.9) * 1e3:.0f} ms; in _take_batch (waiting for jobs) p50 "
            f"{percentile(waits, 0.5) * 1e3:.0f} ms; a batch of n jobs ran for (median s): "
            + ", ".join(f"{n}: {percentile(d, 0.5):.2f}" for n, d in sorted(durations.items(), reverse=True))
            + "; of a batch's time, moving steps to the host and streaming them (_drain): "
            + ", ".join(
                f"{n} jobs {percentile(d, 0.5):.0%} (publishing {percentile(publishing[n], 0.5):.0%})"
                for n, d in sorted(draining.items(), reverse=True)
                if n in (max(draining), min(draining))
            )
        )


def summarise(sizes: list[int]) -> str:
    counts: dict[int, int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    return ", ".join(f"{size} x{n}" for size, n in sorted(counts.items(), reverse=True))


if __name__ == "__main__":
    main()
