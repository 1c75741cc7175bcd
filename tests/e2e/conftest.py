"""End-to-end harness: Debian's Chromium driven by Playwright (sync API) against
pytest-django's ``live_server``.

Every test in this folder is marked ``browser`` (see ``pytest_collection_modifyitems``):
it skips locally when /usr/bin/chromium is missing and fails in CI.

- ``browser`` (tests/browser_fixtures.py, shared with other folders' browser tests) is one
  Chromium per test session; ``page`` is a fresh context
  (its own cookies) per test, pointed at the live server, with ~10 s timeouts.
- When a test fails, a full-page screenshot of its page lands in test-results/.
- Email: pytest-django switches to the locmem backend and the live server runs in
  a thread of this process, so pytest-django's ``mailoutbox`` (``django.core.mail.outbox``)
  holds what the app sent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.browser_fixtures import TIMEOUT_MS

# Playwright's sync API runs an asyncio event loop in the test thread (in a
# greenlet), so from the test body's point of view a loop is "running". Django's
# async-safety guard then raises SynchronousOnlyOperation for every ORM call made
# by the test itself (factories, fixtures, assertions on the database). Nothing
# here is actually async: the ORM calls run synchronously in this thread and the
# app runs in the live server's own thread, so the guard is a false positive.
# The browser is session-scoped and its loop stays registered until the session
# ends, so the switch must hold for the whole process, not only inside one test.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS_DIR = ROOT / "test-results"


def pytest_collection_modifyitems(config, items):
    # A conftest's collection hook sees the whole session's items: mark only ours.
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # Kept on the item so the page fixture's teardown knows whether the test failed.
    setattr(item, f"rep_{report.when}", report)
    return report


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1]).strip("_")[:120]


@pytest.fixture(scope="session")
def results_dir() -> Path:
    """test-results/ at the repository root, where screenshots go (created by whoever writes there)."""
    return RESULTS_DIR


@pytest.fixture
def page(browser, live_server, request):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
    page.console_errors = console_errors
    yield page
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"FAILED-{_safe_name(request.node.nodeid)}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            print(f"\nscreenshot of the failing page: {path} (at {page.url})")
        except Exception as exc:  # the page may be gone; the original failure matters more
            print(f"\nno screenshot: {exc}")
        if console_errors:
            print("browser console errors:\n  " + "\n  ".join(console_errors))
    context.close()
    # The strict CSP is part of what the pages promise; a violation is a bug even if the flow passed.
    violations = [e for e in console_errors if "Content Security Policy" in e]
    if violations and not failed:
        pytest.fail("CSP violations in the browser console:\n" + "\n".join(violations), pytrace=False)


@pytest.fixture
def screenshot(page):
    """screenshot("landing") saves a full-page PNG to test-results/landing.png."""

    def take(name: str) -> Path:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def reviewer_page(browser, live_server, reviewer):
    """A second browser, with its own cookies, where the reviewer is logged in with a TOTP code."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import decrypt

    from tests.e2e.helpers import log_in

    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    secret = decrypt(Authenticator.objects.get(user=reviewer, type=Authenticator.Type.TOTP).data["secret"])
    log_in(page, reviewer.email, totp_secret=secret)
    yield page
    context.close()
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
