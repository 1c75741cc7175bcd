""".ci/run, the CI entry point: its package install waits for another install's lock instead of
failing. Run with a fake apt-get on PATH that records how it was called (nothing is installed)."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

CI_RUN = Path(__file__).resolve().parent.parent / ".ci" / "run"

# Each call: the arguments one per line, then DEBIAN_FRONTEND, then an end marker.
_RECORDING_COMMAND = """#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done >> "$CALLS"
printf 'DEBIAN_FRONTEND=%s\\n--\\n' "${DEBIAN_FRONTEND:-}" >> "$CALLS"
"""


@pytest.fixture
def fake_bin(tmp_path) -> Path:
    """A folder for PATH with apt-get and make that only record their calls in $CALLS."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("apt-get", "make"):
        (folder / name).write_text(_RECORDING_COMMAND.replace('"$CALLS"', f'"$CALLS.{name}"'))
        (folder / name).chmod(0o755)
    return folder


def _install(fake_bin: Path, tmp_path: Path, *packages: str, lock_files: list[Path] | None = None):
    calls = tmp_path / "calls"
    lock_setting = f"PACKAGE_LOCK_FILES=({' '.join(map(str, lock_files))}); " if lock_files else ""
    result = subprocess.run(
        ["bash", "-c", f'source "{CI_RUN}"; {lock_setting}install_packages "$@"', "install", *packages],
        check=False,
        env={"PATH": f"{fake_bin}:{os.environ['PATH']}", "CALLS": str(calls), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    apt_calls = Path(f"{calls}.apt-get")
    recorded = [call.strip().splitlines() for call in apt_calls.read_text().split("--\n") if call.strip()]
    assert not Path(f"{calls}.make").exists(), "sourcing .ci/run must not run the suite"
    return result, recorded


def test_ci_installs_packages_waiting_up_to_ten_minutes_for_apt_and_dpkg_locks(fake_bin, tmp_path):
    _, calls = _install(fake_bin, tmp_path, "chromium", "docker-compose")
    update, install = calls
    assert update[:2] == ["-o", "DPkg::Lock::Timeout=600"]
    assert "update" in update
    assert install[:2] == ["-o", "DPkg::Lock::Timeout=600"]
    assert install[2:] == ["install", "-y", "-qq", "chromium", "docker-compose", "DEBIAN_FRONTEND=noninteractive"]


def test_ci_says_who_holds_the_package_lock_while_it_waits(fake_bin, tmp_path):
    lock = tmp_path / "lock-frontend"
    with open(lock, "w") as held:
        # The kind of lock apt and dpkg take (fcntl), held by this process as another install would.
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result, calls = _install(fake_bin, tmp_path, "chromium", lock_files=[tmp_path / "other-lock", lock])
    waiting = [line for line in result.stderr.splitlines() if "waiting" in line]
    assert len(waiting) == len(calls) == 2  # before the update and before the install
    assert "for the package manager's lock, held by" in waiting[0]
    assert f"(pid {os.getpid()})" in waiting[0]


def test_ci_does_not_announce_a_wait_when_no_install_is_running(fake_bin, tmp_path):
    result, _ = _install(fake_bin, tmp_path, "chromium", lock_files=[tmp_path / "free-lock"])
    assert "waiting" not in result.stdout + result.stderr
