"""The one Chromium of a test session (Debian's, driven by Playwright's sync API), shared by every
browser test: tests/e2e and the sandbox's playground test. One per session because Playwright's
sync API keeps an event loop registered in the test thread while it runs: a second instance
started beside it would refuse to start. Registered in tests/conftest.py."""

from __future__ import annotations

import os

import pytest

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Without these, Chromium keeps trying to reach Google's services from a machine
# that has no network, and floods the log with failed connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser(unavailable):
    if not os.path.exists(CHROMIUM_PATH):
        # Session fixtures run before the function-scoped _requirements check, so
        # the same skip-locally/fail-in-CI rule is applied here too.
        unavailable(None, f"needs Debian's Chromium at {CHROMIUM_PATH} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    # Never `playwright install`: use the system Chromium.
    chromium = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()
