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
