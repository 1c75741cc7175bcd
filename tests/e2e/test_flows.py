"""The portal as a person sees it in a browser: sign up, verify, log in, MFA.

Assertions are on what the page shows (headings, messages, nav), not on the
database, except where a test needs a secret that only a phone would know.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from portal import roles
from tests.e2e.helpers import confirmation_path, totp_code_fresh
from tests.factories import TEST_PASSWORD, UserFactory

LLAMA_SIZES = ["LLaMA 7B", "LLaMA 13B", "LLaMA 33B", "LLaMA 65B"]


def log_in_with_password(page: Page, email: str, password: str = TEST_PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def confirm_access_if_asked(page: Page, password: str = TEST_PASSWORD) -> None:
    """allauth asks for the password again before adding an authenticator
    (MFA_REAUTHENTICATION_REQUIRED) once the login's password is a few minutes old
    (portal.adapters); right after logging in it does not."""
    page.wait_for_url(re.compile(r"/accounts/(reauthenticate|2fa/totp/activate)/"))
    if "/accounts/reauthenticate/" in page.url:
        expect(page.get_by_role("heading", name="Confirm Access")).to_be_visible()
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Confirm").click()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    # allauth asks "Are you sure?" only on GET; the nav button POSTs straight away.
    expect(page.get_by_role("link", name="Log in")).to_be_visible()


def test_signup_verify_login_see_catalog(page: Page, mailoutbox, llama_catalog, screenshot):
    email = "grace.new@uni.example.edu"

    page.goto("/")
    screenshot("landing-anonymous")
    page.get_by_role("link", name="Sign up").click()
    expect(page.get_by_role("heading", name="Sign Up")).to_be_visible()
    screenshot("signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password:", exact=True).fill(TEST_PASSWORD)
    page.get_by_label("Password (again)").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()
    screenshot("verify-email-sent")
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [email]

    page.goto(confirmation_path(message))
    expect(page.get_by_role("heading", name="Confirm Email Address")).to_be_visible()
    expect(page.get_by_text(email).first).to_be_visible()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text(f"You have confirmed {email}")).to_be_visible()

    log_in_with_password(page, email)
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Research access to model weights")).to_be_visible()
    catalog = page.get_by_test_id("catalog")
    for size in LLAMA_SIZES:
        expect(catalog.get_by_role("link", name=size, exact=True)).to_be_visible()
    expect(page.get_by_test_id("nav-account")).to_have_text(email)
    screenshot("landing")

    catalog.get_by_role("link", name="LLaMA 65B", exact=True).click()
    expect(page).to_have_url(re.compile(r"/models/llama-65b/$"))
    expect(page.get_by_test_id("access-state")).to_be_visible()
    screenshot("variant-llama-65b")

    page.get_by_test_id("nav-account").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("researcher")
    screenshot("account-researcher")


def test_reviewer_enrols_totp_then_logs_in_with_code(page: Page, db, screenshot):
    reviewer = UserFactory(email="new.reviewer@lab.example.org", role=roles.REVIEWER)

    log_in_with_password(page, reviewer.email)
    expect(page.get_by_test_id("nav-account")).to_have_text(reviewer.email)

    # The account page shows tokens but offers no way to create one yet.
    page.goto("/account/")
    mfa_needed = "Turn on two-factor authentication and log in with it to create API tokens."
    expect(page.get_by_text(mfa_needed)).to_be_visible()
    expect(page.get_by_role("button", name="Create token")).to_have_count(0)
    screenshot("account-reviewer-without-mfa")

    # The admin sends them to set up an authenticator app: first why, then the set-up page.
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    page.get_by_role("link", name="Set up the authenticator app").click()
    confirm_access_if_asked(page)
    expect(page).to_have_url(re.compile(r"/accounts/2fa/totp/activate/"))
    expect(page.get_by_role("heading", name="Activate Authenticator App")).to_be_visible()
    screenshot("totp-activate")

    # What the person would type into their phone: the secret shown on the page.
    secret = page.locator("#authenticator_secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{16,}=*", secret), secret
    page.get_by_label("Authenticator code").fill(totp_code_fresh(secret))
    page.get_by_role("button", name="Activate").click()

    # allauth generates recovery codes on activation and shows them once.
    expect(page.get_by_role("heading", name="Recovery Codes")).to_be_visible()
    expect(page.get_by_text("Authenticator app activated.")).to_be_visible()
    codes = page.locator("#recovery_codes").input_value().split()
    assert len(codes) == 10
    screenshot("recovery-codes")

    # Enrolling in this session counts as a verified session: tokens are offered now.
    page.goto("/account/")
    expect(page.get_by_role("button", name="Create token")).to_be_visible()

    log_out(page)

    # A new session needs the password and then a code from the app.
    log_in_with_password(page, reviewer.email)
    expect(page.get_by_role("heading", name="Two-Factor Authentication")).to_be_visible()
    screenshot("mfa-authenticate")
    # Activation checks the code without consuming it (allauth only marks codes used
    # when it authenticates with a stored authenticator), so the current code works here.
    page.get_by_label("Code").fill(totp_code_fresh(secret))
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_test_id("nav-account")).to_have_text(reviewer.email)

    page.goto("/account/")
    expect(page.get_by_text("This session was verified with it.")).to_be_visible()
    screenshot("account")
    page.get_by_label("Name").fill("laptop download script")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name="Token “laptop download script” created")).to_be_visible()
    secret_shown = page.get_by_test_id("token-secret").inner_text().strip()
    assert secret_shown.startswith("mwp_")
    screenshot("token-created")

    # Shown once: the account page lists the token by its hint only.
    page.get_by_role("link", name="Back to your account").click()
    tokens = page.get_by_test_id("tokens")
    expect(tokens.get_by_role("cell", name="laptop download script")).to_be_visible()
    expect(page.get_by_text(secret_shown)).to_have_count(0)


def test_reviewer_without_mfa_cannot_open_admin(page: Page, reviewer_without_mfa):
    log_in_with_password(page, reviewer_without_mfa.email)
    expect(page.get_by_test_id("nav-account")).to_have_text(reviewer_without_mfa.email)

    page.goto("/admin/")
    # Sent to set up an authenticator app: the page that says why, then the set-up page.
    expect(page).to_have_url(re.compile(r"/accounts/2fa/required/\?next=%2Fadmin%2F"))
    expect(page.get_by_text("Reviewers and administrators must log in with an authenticator app")).to_be_visible()
    expect(page.get_by_text("Weights portal administration")).to_have_count(0)
    page.get_by_role("link", name="Set up the authenticator app").click()
    confirm_access_if_asked(page)
    expect(page.get_by_role("heading", name="Activate Authenticator App")).to_be_visible()

    # Nor through the admin's own login page.
    page.goto("/admin/login/?next=/admin/")
    expect(page).not_to_have_url(re.compile(r"/admin/"))
    expect(page.get_by_text("Weights portal administration")).to_have_count(0)


def test_totp_code_cannot_be_used_twice(page: Page, reviewer):
    # The conftest reviewer already has an authenticator app.
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import decrypt

    secret = decrypt(Authenticator.objects.get(user=reviewer, type=Authenticator.Type.TOTP).data["secret"])
    code = totp_code_fresh(secret, min_seconds_left=8)

    log_in_with_password(page, reviewer.email)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_test_id("nav-account")).to_have_text(reviewer.email)
    log_out(page)

    log_in_with_password(page, reviewer.email)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text("Incorrect code.")).to_be_visible()
    expect(page.get_by_test_id("nav-account")).to_have_count(0)
