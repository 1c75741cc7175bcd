"""Helpers for the browser tests: logging in, reading mail, computing TOTP codes."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.factories import TEST_PASSWORD
from tests.totp import totp_code_fresh

__all__ = ["confirmation_path", "log_in", "totp_code_fresh"]


def confirmation_path(message) -> str:
    """The path of the email-confirmation link in an allauth verification email."""
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+)", message.body)
    assert match, f"no confirmation link in email:\n{message.body}"
    return match.group(1)


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
