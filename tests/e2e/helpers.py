"""Helpers for the browser tests: logging in, reading mail, computing TOTP codes."""

from __future__ import annotations

import re
import time

import pyotp
from playwright.sync_api import Page, expect

from tests.factories import TEST_PASSWORD


def confirmation_path(message) -> str:
    """The path of the email-confirmation link in an allauth verification email."""
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+)", message.body)
    assert match, f"no confirmation link in email:\n{message.body}"
    return match.group(1)


def totp_code_fresh(secret: str, min_seconds_left: float = 3.0) -> str:
    """A code for the current 30 s window, with time left to submit it.

    allauth accepts only the current window (MFA_TOTP_TOLERANCE = 0), so a code
    computed in the last moments of a window may be stale by the time the server
    checks it; wait for the next window then.
    """
    totp = pyotp.TOTP(secret)
    left = totp.interval - (time.time() % totp.interval)
    if left < min_seconds_left:
        time.sleep(left + 0.1)
    return totp.now()


def log_in(page: Page, email: str, totp_secret: str | None = None) -> None:
    """Log in through the login form (and the TOTP step when a secret is given)."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    if totp_secret:
        expect(page.get_by_role("heading", name="Two-Factor Authentication")).to_be_visible()
        page.get_by_label("Code").fill(totp_code_fresh(totp_secret))
        page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_test_id("nav-account")).to_have_text(email)
