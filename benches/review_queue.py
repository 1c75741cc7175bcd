"""Render time of the reviewers' queue page with 10,000 requests in the database.

Seeds a throwaway database (a temporary SQLite file, or a fresh test database on
the server of DATABASE_URL when it is set: the database it names is not touched)
with requests written by bulk_create, logs a reviewer in with an MFA-verified
session, renders the queue page N times with Django's test client and prints one
table: median and p95 per page, against the trivial /healthz and the catalog page
measured in the same run. Goal: p95 of the queue page under 150 ms.

    .venv/bin/python benches/review_queue.py [--runs 60] [--requests 10000]

Not part of the test suite. Runs with DEBUG off and persistent database
connections (as in production) unless DEBUG or DATABASE_CONN_MAX_AGE say otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_P95_MS = 150.0


def _setup_django(tmp: Path) -> str | None:
    """Configure and start Django; returns the name of DATABASE_URL's database when a
    test database was created beside it (to drop at the end)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "60")  # persistent connections, as in production
    os.environ["PORTAL_VAR_DIR"] = str(tmp)  # cache, development key: nothing lands in var/
    on_server = bool(os.environ.get("DATABASE_URL"))
    if not on_server:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if on_server:
        original = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        return original
    call_command("migrate", verbosity=0, interactive=False)
    return None


def _seed(count: int):
    from django.db import transaction
    from django.utils import timezone

    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.requests.models import (
        AccessRequest,
        OrganizationType,
        RequestedVariant,
        RequestStatus,
        ScreeningFlag,
        ScreeningFlagCode,
    )
    from access.review.models import DecisionKind, ReviewDecision
    from access.seed import llama_release_seed
    from portal import roles
    from portal.models import User
    from portal.services import user_role_set

    llama_release_seed()
    reviewer = User.objects.create_user("bench.reviewer@lab.example.org", "bench-password-1")
    user_role_set(user=reviewer, role=roles.REVIEWER)
    variants = list(ModelVariant.objects.filter(slug__in=["llama-7b", "llama-13b", "llama-33b", "llama-65b"]))
    license_version = license_current(variants[0].family)
    now = timezone.now()
    statuses = (
        [RequestStatus.SUBMITTED] * 5
        + [RequestStatus.IN_REVIEW] * 2
        + [
            RequestStatus.INFO_REQUESTED,
            RequestStatus.APPROVED,
            RequestStatus.REJECTED,
        ]
    )
    countries = ["GB", "DE", "US", "FR", "JP", "BR", "IN", "CA", "KR", "NG"]
    with transaction.atomic():
        applicants = User.objects.bulk_create(
            [User(email=f"applicant{index}@uni{index % 40}.example.edu") for index in range(500)]
        )
        requests = AccessRequest.objects.bulk_create(
            [
                AccessRequest(
                    reference=f"AR-B{index:07d}",
                    applicant=applicants[index % len(applicants)],
                    status=statuses[index % len(statuses)],
                    full_name=f"Applicant {index}",
                    affiliation=f"University {index % 40}",
                    organization_type=OrganizationType.values[index % len(OrganizationType.values)],
                    position="Researcher",
                    country=countries[index % len(countries)],
                    use_case="We will study how knowledge is stored in the weights. " * 10,
                    publications=["https://scholar.example.org/someone"],
                    license=license_version,
                    assignee=reviewer if index % 4 == 0 else None,
                    submitted_at=now - dt.timedelta(minutes=7 * index),
                )
                for index in range(count)
            ],
            batch_size=1000,
        )
        wanted = []
        for index, access_request in enumerate(requests):
            wanted.append(RequestedVariant(request=access_request, variant=variants[index % len(variants)]))
            if index % 3 == 0:
                wanted.append(RequestedVariant(request=access_request, variant=variants[(index + 1) % len(variants)]))
        RequestedVariant.objects.bulk_create(wanted, batch_size=2000)
        codes = ScreeningFlagCode.values
        ScreeningFlag.objects.bulk_create(
            [
                ScreeningFlag(request=r, code=codes[index % len(codes)], reason="Raised by the benchmark.")
                for index, r in enumerate(requests)
                if index % 6 == 0
            ],
            batch_size=2000,
        )
        approvals = ReviewDecision.objects.bulk_create(
            [
                ReviewDecision(request=r, reviewer=reviewer, kind=DecisionKind.APPROVE, review_round=1)
                for index, r in enumerate(requests)
                if index % 9 == 0
            ],
            batch_size=2000,
        )
        through = ReviewDecision.variants.through
        through.objects.bulk_create(
            [through(reviewdecision=d, modelvariant=variants[-1]) for d in approvals], batch_size=2000
        )
    from django.db import connection

    with connection.cursor() as cursor:  # fresh statistics for the planner, as autovacuum would give
        cursor.execute("ANALYZE")
    return reviewer


def _logged_in_reviewer_client(reviewer):
    from django.test import Client

    from portal.mfa import session_mark_mfa_enrolled

    client = Client()
    client.force_login(reviewer)
    session = client.session

    class _Request:  # session_mark_mfa_enrolled only needs request.session
        pass

    marker = _Request()
    marker.session = session
    session_mark_mfa_enrolled(marker, reviewer)
    session.save()
    return client


def _time(client, path: str, runs: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):  # warm up: template loading, first connection
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.get("Location"))
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    query_count = len(queries)  # read now: the log is a live view
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times, query_count


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="renders per page (default 60)")
    parser.add_argument("--requests", type=int, default=10_000, help="requests to seed (default 10,000)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="review-queue-bench-"))
    drop_test_db = None
    try:
        drop_test_db = _setup_django(tmp)
        from django.conf import settings
        from django.db import connection

        started = time.perf_counter()
        reviewer = _seed(args.requests)
        print(f"seeded {args.requests:,} requests in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        # What seeding left on the heap is not the server's: keep full collections of it out of the timings.
        gc.collect()
        gc.freeze()
        client = _logged_in_reviewer_client(reviewer)
        anonymous = type(client)()

        pages = [
            ("/healthz (reference)", anonymous, "/healthz", False),
            ("catalog / (reference)", client, "/", False),
            ("queue /review/", client, "/review/", True),
            ("queue, filtered and page 3", client, "/review/?flag=short_use_case&variant=llama-13b&page=3", True),
            ("queue, all in review", client, "/review/?status=in_review&assignee=none", True),
        ]
        rows = []
        for label, who, path, has_goal in pages:
            times, queries = _time(who, path, args.runs)
            rows.append((label, statistics.median(times), _p95(times), queries, has_goal))

        catalog_median = rows[1][1]
        vendor = connection.vendor
        header = f"{'page':<30} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'× catalog':>10}  goal"
        print(
            f"Review queue page, {args.requests:,} requests, {args.runs} renders each, {vendor}, "
            f"DEBUG {'on' if settings.DEBUG else 'off'}, CONN_MAX_AGE {connection.settings_dict['CONN_MAX_AGE']}"
        )
        print(header)
        print("-" * len(header) + "-" * 18)
        failed = False
        for label, median, p95, queries, has_goal in rows:
            goal = ""
            if has_goal:
                ok = p95 < GOAL_P95_MS
                failed |= not ok
                goal = f"p95 < {GOAL_P95_MS:.0f} ms: {'PASS' if ok else 'FAIL'}"
            print(f"{label:<30} {median:>10.1f} {p95:>8.1f} {queries:>8} {median / catalog_median:>9.1f}×  {goal}")
        return 1 if failed else 0
    finally:
        if drop_test_db:
            from django.db import connection

            connection.creation.destroy_test_db(drop_test_db, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
