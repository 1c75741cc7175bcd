"""A new reviewer's first login, in a browser: why an authenticator app is required, setting it
up with a code computed from the secret on the page, the recovery codes and Continue, and back
to the review page they first asked for, with no second password prompt on the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import TEST_PASSWORD
from tests.totp import totp_code_fresh

WANTED = "/review/?status=submitted"


VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("viewport", VIEWPORTS.values(), ids=VIEWPORTS.keys())
def test_new_reviewer_sets_up_an_authenticator_app_and_lands_on_the_page_they_wanted(
    page: Page, reviewer_without_mfa, llama_catalog, viewport, screenshot
):
    page.set_viewport_size(viewport)
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(frame.url) if frame == page.main_frame else None)

    page.goto(WANTED)
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.get_by_label("Email").fill(reviewer_without_mfa.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign In").click()

    # 1. Why.
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    why = page.get_by_test_id("mfa-why")
    expect(why).to_contain_text("Reviewers and administrators must log in with an authenticator app")
    expect(why).to_contain_text("a stolen password alone must not be enough")
    screenshot(f"first-login-why-{viewport['width']}")
    page.get_by_role("link", name="Set up the authenticator app").click()

    # 2. The set-up page, straight away: the password was typed seconds ago.
    expect(page.get_by_role("heading", name="Activate Authenticator App")).to_be_visible()
    expect(page.get_by_text("Step 2 of 3")).to_be_visible()
    secret = page.locator("#authenticator_secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code_fresh(secret))
    page.get_by_role("button", name="Activate").click()

    # 3. The recovery codes, then Continue.
    expect(page.get_by_role("heading", name="Recovery Codes")).to_be_visible()
    expect(page.get_by_text("Step 3 of 3")).to_be_visible()
    assert len(page.locator("#recovery_codes").input_value().split()) == 10
    screenshot(f"first-login-codes-{viewport['width']}")
    page.get_by_role("link", name="Continue").click()

    expect(page).to_have_url(re.compile(re.escape(WANTED) + "$"))
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    assert not any("/accounts/reauthenticate/" in url for url in visited), visited
    width, viewport_width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width <= viewport_width
