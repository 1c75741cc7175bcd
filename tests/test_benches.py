"""The benchmarks' smoke runs: each bench that has a --smoke mode runs end to end on tiny sizes,
so a bench that no longer works is found by `make test`, not on the day someone measures."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.real_worker


def test_the_sandbox_bench_runs_and_prints_its_table():
    result = subprocess.run(
        [sys.executable, "benches/sandbox.py", "--smoke"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| measure | sandbox | engine reference |" in result.stdout
    assert "time to first token p50 (ms)" in result.stdout
    # Scoring through the API (echo, max_tokens 0) against the engine's score(): a rate on each side.
    scoring = [line for line in result.stdout.splitlines() if line.startswith("| scoring (echo, max_tokens 0)")]
    assert len(scoring) == 2
    for row in scoring:
        sandbox, engine = (float(cell.replace(",", "")) for cell in row.split(" | ")[1:3])
        assert sandbox > 0 and engine > 0


def test_the_load_bench_runs_every_kind_of_user_without_an_error():
    result = subprocess.run(
        [sys.executable, "benches/load.py", "--smoke"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| endpoint | requests | failures | p50 ms | p95 ms | max ms | req/s |" in result.stdout
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in result.stdout.splitlines()}
    for endpoint in (
        "page: /review/ (queue)",
        "api: POST /api/v1/grants/{id}/download-links",
        "/dl/ Range, resume to the end (206)",
        "sandbox: POST /v1/completions, until [DONE]",
    ):
        assert int(rows[endpoint][1].replace(",", "")) > 0, endpoint
    assert rows["**all**"][2] == "0"
