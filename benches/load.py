"""A bounded load test of the whole portal on loopback: 50 concurrent users (locust), 0 errors expected.

A throwaway database is migrated and seeded, the tiny demo checkpoint (make_tiny_llama's sizes) is
published as llama-demo-tiny's files to local storage, and every simulated user gets an account of its
own: researchers with an access request, an active grant of the demo model, a personal API token and a
logged-in session; reviewers with an API token and an MFA-verified session. Then, as real processes, as
in production: gunicorn serving the site, the API and the download gateway (2 x cores + 1 sync workers),
uvicorn serving the sandbox's /v1/ (1 worker), a Celery sandbox worker (--pool threads) running the demo
model on the CPU, on a private redis-server (broker, cache and the sandbox's token streams) where the
binary is installed (else REDIS_URL), and PostgreSQL (a throwaway database on the server of DATABASE_URL,
or on 127.0.0.1:5432 as user postgres; SQLite otherwise).

locust runs the users in a process of its own (benches/load_locustfile.py; it patches the standard
library with gevent, so neither this process nor Django's import it), without a think time longer than
a second:
- one user requests the trivial view /livez: the reference, what waiting for a free worker costs;
- researchers browsing: the catalog, a model page, their requests and one of them, their grants, the
  downloads page of their grant;
- API clients with a bearer token: models, grants, access requests (list and one), new download links;
- downloaders: the largest demo weight file through /dl/, whole and as two Range parts (the first half,
  then a resume), and the smallest file, with links they made themselves;
- reviewers: the queue page and GET /api/v1/review/requests;
- sandbox clients: streamed completions (/v1/completions, stream: true) of the demo model, timed to the
  first event and to `data: [DONE]`.

The limits that would refuse a load test's own traffic are raised for the run, and printed: a link's
downloads (DOWNLOAD_LINK_MAX_DOWNLOADS; its bytes follow), new links per grant a day, and the sandbox's
per-user rates. Anything else than the expected answer (a status, a body of the right size, a stream
that ends with [DONE]) is an error. Prints one table: per endpoint, requests, failures, p50, p95, max and
requests/s (exact percentiles from every request's time); exits 1 if any request failed.

    .venv/bin/python benches/load.py [--smoke] [--users 50] [--seconds 60] [--web-workers N] [--keep-logs]

--smoke: 10 users for 15 s, for CI (tests/test_benches.py). Processes, database, Redis keys and
temporary files are removed at the end, also on failure, Ctrl-C or SIGTERM. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# benches/, beside this script: the throwaway database, and the server processes of the sandbox bench.
from sandbox import (
    BenchError,
    Service,
    bench_teardown,
    free_port,
    log_tail,
    percentile,
    reachable,
    redis_urls,
    start_redis,
    start_uvicorn,
    start_worker,
)
from throwaway_database import database_url

VARIANT = "llama-demo-tiny"
START_SECONDS = 90
# Share of the users per kind (benches/load_locustfile.py), in this order; each kind gets one at least.
KINDS = {
    "Reference": 0.02,
    "ResearcherBrowsing": 0.28,
    "ApiClient": 0.24,
    "Downloader": 0.16,
    "Reviewer": 0.14,
    "SandboxStreamer": 0.16,
}
PROMPTS = ["Once upon a time", "The weights of a language model", "A llama walks into", "Research access is"]
# Raised for the run: the load test's own traffic must not be refused by them (they are tested elsewhere).
RAISED_LIMITS = {
    "DOWNLOAD_LINK_MAX_DOWNLOADS": "1000000",
    "DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY": "1000000",
    "SANDBOX_REQUESTS_PER_MINUTE": "1000000",
    "SANDBOX_CONCURRENT_REQUESTS": "1000",
    "SANDBOX_TOKENS_PER_DAY": str(10**12),
}


def kinds_for(users: int) -> dict[str, int]:
    """Users per kind: one of each at least, the rest by share (largest remainders)."""
    if users < len(KINDS):
        raise SystemExit(f"--users must be at least {len(KINDS)}, one per kind of user")
    spare = users - len(KINDS)
    exact = {kind: share * spare for kind, share in KINDS.items()}
    counts = {kind: 1 + int(value) for kind, value in exact.items()}
    for kind in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[: users - sum(counts.values())]:
        counts[kind] += 1
    return counts


def start_gunicorn(env: dict[str, str], port: int, workers: int, log_path: Path) -> Service:
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
               "--log-level", "warning"]  # fmt: skip
    service = Service("gunicorn", command, env, log_path)
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
    raise BenchError(f"gunicorn did not answer within {START_SECONDS} s:\n{log_tail(log_path)}")


def setup_portal(checkpoint: Path, researchers: int, reviewers: int) -> dict:
    """Migrate, seed, publish the checkpoint as llama-demo-tiny's files, and make the accounts: each
    researcher with an access request (llama-7b), an active grant of the demo model, an API token and a
    logged-in session; each reviewer with an API token and an MFA-verified session."""
    from django.core.management import call_command
    from django.db import transaction
    from django.test import Client

    call_command("migrate", verbosity=0, interactive=False)
    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.distribution.publishing import weights_publish
    from access.grants.services import grant_accept_license, grant_create
    from access.requests.application import ApplicationData
    from access.requests.services import access_request_submit
    from access.seed import llama_release_seed
    from portal import roles
    from portal.mfa import ENROLLED_IN_SESSION_KEY
    from portal.services import api_token_create, user_create

    llama_release_seed()
    variant = ModelVariant.objects.get(slug=VARIANT)
    weights_publish(variant=variant, source_dir=checkpoint)
    license_version = license_current(variant.family)
    llama_7b = ModelVariant.objects.get(slug="llama-7b")
    application = ApplicationData(
        full_name="Load Test", affiliation="University of Example", organization_type="academic",
        position="Researcher", country="GB", publications=["https://scholar.example.org/load"],
        use_case="We measure how the portal behaves under load, as researchers would use it. " * 8,
    )  # fmt: skip

    def logged_in(user, *, mfa: bool = False) -> str:
        client = Client()
        client.force_login(user)
        if mfa:  # as after a login with the authenticator's code (portal.mfa)
            session = client.session
            session[ENROLLED_IN_SESSION_KEY] = str(user.pk)
            session.save()
        return client.cookies["sessionid"].value

    plan_reviewers = []
    for index in range(reviewers):
        reviewer = user_create(
            email=f"load-reviewer-{index}@lab.example.org", password=None, role=roles.REVIEWER, email_verified=True
        )
        plan_reviewers.append(
            {"token": api_token_create(user=reviewer, name="load")[1], "session": logged_in(reviewer, mfa=True)}
        )
    granted_by = reviewer
    plan_researchers = []
    for index in range(researchers):
        with transaction.atomic():
            researcher = user_create(
                email=f"load-researcher-{index}@uni.example.edu", password=None, email_verified=True
            )
            request = access_request_submit(
                applicant=researcher, variants=[llama_7b], data=application, license_version=license_version
            )
            grant = grant_create(user=researcher, variant=variant, actor=granted_by, reason="load test")
            grant_accept_license(grant=grant, user=researcher, license_version=license_version)
        plan_researchers.append({
            "token": api_token_create(user=researcher, name="load")[1], "session": logged_in(researcher),
            "grant": grant.pk, "request": request.pk, "model": "llama-7b",
        })  # fmt: skip
    return {"researchers": plan_researchers, "reviewers": plan_reviewers}


def run_locust(plan_path: Path, results_path: Path, users: int, seconds: int, log_path: Path) -> dict:
    env = {**os.environ, "LOAD_PLAN": str(plan_path), "LOAD_RESULTS": str(results_path), "PYTHONUNBUFFERED": "1"}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL"):  # nothing of Django's in there
        env.pop(name, None)
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "benches" / "load_locustfile.py"), "--headless",
        "--users", str(users), "--spawn-rate", str(max(1, users // 4)), "--run-time", f"{seconds}s",
        "--stop-timeout", "30", "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        result = subprocess.run(
            command, check=False, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120
        )
    if result.returncode != 0 or not results_path.exists():
        raise BenchError(f"locust exited with {result.returncode}:\n{log_tail(log_path)}")
    return json.loads(results_path.read_text())


def report(results: dict, *, header: str) -> int:
    """Prints the table; returns the number of failed requests (a run that made none fails too)."""
    times: dict[str, list[float]] = results["times"]
    failures: list[list[str]] = results["failures"]
    if not times:
        print("\nno request was made: see locust's log (--keep-logs)")
        return 1
    start, end = results["span"]
    wall = max(end - start, 1e-9)
    failed: dict[str, int] = {}
    for key, _ in failures:
        failed[key] = failed.get(key, 0) + 1
    print()
    print(header)
    print()
    print("| endpoint | requests | failures | p50 ms | p95 ms | max ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    everything: list[float] = []
    for key in sorted(times, key=_row_order):
        values = times[key]
        everything += values
        name = key.split(" ", 1)[1]
        print(
            f"| {name} | {len(values):,} | {failed.get(key, 0)} | {percentile(values, 0.5):.0f} | "
            f"{percentile(values, 0.95):.0f} | {max(values):.0f} | {len(values) / wall:.1f} |"
        )
    print(
        f"| **all** | {len(everything):,} | {len(failures)} | {percentile(everything, 0.5):.0f} | "
        f"{percentile(everything, 0.95):.0f} | {max(everything, default=0):.0f} | {len(everything) / wall:.1f} |"
    )
    if failures:
        print(f"\n{len(failures)} failed request(s); the first of each kind:")
        seen = set()
        for key, message in failures:
            if key not in seen:
                seen.add(key)
                print(f"  {key.split(' ', 1)[1]}: {message}")
    return len(failures)


def _row_order(key: str) -> tuple[int, str]:
    name = key.split(" ", 1)[1]
    for rank, prefix in enumerate(("reference:", "page:", "api:", "/dl/", "sandbox:")):
        if name.startswith(prefix):
            return rank, name
    return 9, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="10 users for 15 s: checks that it runs (CI)")
    parser.add_argument("--users", type=int, default=None, help="concurrent users (default 50; smoke 10)")
    parser.add_argument("--seconds", type=int, default=None, help="how long the users run (default 60; smoke 15)")
    parser.add_argument(
        "--web-workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn's sync workers"
    )
    parser.add_argument("--stream-max-tokens", type=int, default=16, help="max_tokens of each streamed completion")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the temporary folder (servers' and locust's logs)"
    )
    opts = parser.parse_args()
    users = opts.users or (10 if opts.smoke else 50)
    seconds = opts.seconds or (15 if opts.smoke else 60)
    counts = kinds_for(users)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    bench_db = f"portal_bench_load_{os.getpid()}"
    admin_url = None
    services: list[Service] = []
    redis_server = None
    redis_cleanup: tuple[str, str] | None = None
    queue = f"bench-load-{uuid.uuid4().hex[:8]}"

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server = os.environ.get("DATABASE_URL", "")
        if not server and reachable("127.0.0.1", 5432):
            server = "postgres://postgres@127.0.0.1:5432/postgres"
        db_url, admin_url = database_url(tmp, bench_db, server=server)
        redis_server = start_redis(tmp)
        if redis_server is not None:
            services.append(redis_server)
        broker = redis_urls(redis_server.url if redis_server else None)
        web_port, asgi_port = free_port(), free_port()
        env = {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "PORTAL_VAR_DIR": str(tmp / "var"),
            "PORTAL_BASE_URL": f"http://127.0.0.1:{web_port}",
            "DATABASE_URL": db_url,
            "DATABASE_CONN_MAX_AGE": "60",  # persistent connections, as in production
            "PORTAL_STORAGE_BACKEND": "local",
            "PORTAL_STORAGE_ROOT": str(tmp / "storage"),
            "SANDBOX_QUEUE": queue,
            "SANDBOX_CACHE_DIR": str(tmp / "sandbox-cache"),
            "SANDBOX_STREAM_DIR": str(tmp / "sandbox-streams"),
            "SANDBOX_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **RAISED_LIMITS,
        }
        if broker is not None:
            env.update({"REDIS_URL": broker[0], "CELERY_BROKER_URL": broker[1], "SANDBOX_TRANSPORT": "redis"})
            redis_cleanup = broker
        else:
            env.update({"REDIS_URL": "", "CELERY_BROKER_URL": "filesystem://", "SANDBOX_TRANSPORT": "files"})
        os.environ.update(env)

        print(f"database, catalog, demo weights, {users} researchers, {counts['Reviewer']} reviewers ...", flush=True)
        import django

        django.setup()
        from access.catalog.services import TINY_DEMO
        from inference.llama.checkpoint import tiny_llama_make

        checkpoint = tiny_llama_make(tmp / "checkpoint" / VARIANT, n_shards=2, **TINY_DEMO)
        plan = setup_portal(checkpoint, researchers=users, reviewers=counts["Reviewer"])
        plan.update({
            "web": f"http://127.0.0.1:{web_port}", "asgi": f"http://127.0.0.1:{asgi_port}", "counts": counts,
            "sandbox_model": VARIANT, "prompts": PROMPTS, "stream_max_tokens": opts.stream_max_tokens,
        })  # fmt: skip
        plan_path = tmp / "plan.json"
        plan_path.write_text(json.dumps(plan))

        print("starting gunicorn, uvicorn and the sandbox worker ...", flush=True)
        child_env = {**os.environ, **env}
        services.append(start_gunicorn(child_env, web_port, opts.web_workers, tmp / "gunicorn.log"))
        # Under ASGI each request's database work runs in a thread of its own: no persistent connections.
        asgi_env = {**child_env, "DATABASE_CONN_MAX_AGE": "0"}
        services.append(start_uvicorn(asgi_env, asgi_port, tmp / "uvicorn.log", probe=False))
        services.append(start_worker(child_env, queue, 8, tmp / "worker.log", probe=False))

        print(f"{users} users for {seconds} s ({', '.join(f'{n} {k}' for k, n in counts.items())}) ...", flush=True)
        results = run_locust(plan_path, tmp / "results.json", users, seconds, tmp / "locust.log")
        for service in services:
            service.check()
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        raise SystemExit(130) from None
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        for service in services:
            print(f"--- {service.name} log ---\n{log_tail(service.log_path)}", file=sys.stderr)
        raise SystemExit(f"bench failed: {exc}") from None
    finally:
        bench_teardown(
            services=services, admin_url=admin_url, database=bench_db, tmp=tmp, keep_logs=opts.keep_logs,
            shared_redis=redis_cleanup if redis_server is None else None, queue=queue,
        )  # fmt: skip

    transport = f"Redis ({'a private redis-server' if redis_server else 'shared'})" if broker else "embedded (files)"
    header = (
        f"{'SMOKE RUN: ' if opts.smoke else ''}{users} concurrent users for {seconds} s "
        f"({', '.join(f'{n} {k}' for k, n in counts.items())}; think time 0.2-1 s, sandbox 0.5-1.5 s), locust "
        f"in its own process; gunicorn {opts.web_workers} sync workers, uvicorn 1 worker, a sandbox worker "
        f"(threads, 8), the tiny demo model on the CPU ({opts.stream_max_tokens} tokens a stream); database "
        f"{db_url.split(':')[0]}; broker, cache and streams {transport}; all on this machine, {os.cpu_count()} "
        f"cores. Raised for the run: {', '.join(RAISED_LIMITS)}. Load average (1 min) {load_before:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end."
    )
    failed = report(results, header=header)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
