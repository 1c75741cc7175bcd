"""The applicant's side in a real browser, at desktop and phone widths (issue 15, items 2, 3, 5):
the apply form shows every error in one round, moves focus to a summary that links to each field,
marks the fields aria-invalid and counts the use case's characters as they are typed; the request
page says which model waits for a second reviewer; a revoked model reads "Access revoked"."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from access.grants.models import Grant
from access.grants.services import grant_revoke
from access.review.services import access_request_approve
from portal import roles
from tests.access.conftest import _submit as submit
from tests.e2e.helpers import log_in
from tests.factories import UserFactory

WIDTHS = [pytest.param(1280, id="desktop"), pytest.param(390, id="phone")]


def _at_width(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 844 if width < 800 else 900})


def _no_sideways_scroll(page: Page) -> None:
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= page.viewport_size["width"], f"{page.url} is {wide}px wide"


@pytest.mark.parametrize("width", WIDTHS)
def test_apply_form_shows_every_error_at_once_with_a_focused_summary_and_a_live_count(
    page: Page, researcher, llama_catalog, settings, screenshot, width
):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150
    _at_width(page, width)
    log_in(page, researcher.email)
    page.goto("/apply/?variant=llama-7b")

    use_case = page.get_by_label("Research use case")
    count = page.get_by_test_id("use-case-count")
    use_case.fill("Too short.")
    expect(count).to_have_text("10 of at least 150 characters: 140 to go")
    page.get_by_label("Full legal name").fill("")
    page.get_by_role("button", name="Submit request").click()

    # One round: the name, the organization, the position, the country, the use case and the license.
    summary = page.get_by_test_id("form-errors")
    expect(summary).to_be_focused()
    links = page.get_by_test_id("error-summary-links").get_by_role("link")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert set(hrefs) >= {"#id_full_name", "#id_use_case", "#id_agree", "#id_country"}
    expect(summary).to_contain_text("Describe your research in at least 150 characters (you wrote 10)")
    expect(page.locator("#id_use_case")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_full_name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_agree")).to_have_attribute("aria-invalid", "true")
    # The count works on the text the server sent back, too.
    expect(count).to_have_text("10 of at least 150 characters: 140 to go")
    _no_sideways_scroll(page)
    screenshot(f"apply-errors-{width}")

    page.get_by_role("link", name="Research use case: Describe your research").click()
    expect(page.locator("#id_use_case")).to_be_focused()
    use_case.fill("a" * 160)
    expect(count).to_have_text("160 characters: enough (at least 150)")


@pytest.mark.parametrize("width", WIDTHS)
def test_request_page_names_the_model_waiting_for_a_second_reviewer_and_a_revoked_one(
    page: Page, researcher, reviewer, llama_catalog, screenshot, width
):
    second_reviewer = UserFactory(email="sam.second@lab.example.org", role=roles.REVIEWER)
    access_request = access_request_approve(
        access_request=submit(researcher, "llama-7b", "llama-65b"), reviewer=reviewer
    )
    _at_width(page, width)
    log_in(page, researcher.email)

    page.goto(f"/requests/{access_request.pk}/")
    expect(page.get_by_test_id("request-status")).to_have_text("Partly approved")
    expect(page.get_by_test_id("next-step")).to_contain_text("Approved for LLaMA 7B.")
    expect(page.get_by_test_id("next-step")).to_contain_text("LLaMA 65B still waits for a second reviewer")
    expect(page.get_by_test_id("outcome-llama-65b")).to_contain_text("Waits for a second reviewer")
    _no_sideways_scroll(page)
    screenshot(f"request-partly-approved-{width}")

    access_request_approve(access_request=access_request, reviewer=second_reviewer)
    grant_revoke(
        grant=Grant.objects.get(variant__slug="llama-7b"), actor=reviewer, reason="Shared outside the lab."
    )
    page.reload()
    expect(page.get_by_test_id("request-status")).to_have_text("Access revoked for some models")
    expect(page.get_by_test_id("outcome-llama-7b")).to_contain_text("Access revoked")
    expect(page.get_by_test_id("outcome-llama-7b")).to_contain_text("Shared outside the lab.")
    expect(page.get_by_test_id("access-ended-llama-7b")).to_contain_text("delete every copy of the LLaMA 7B weights")
    screenshot(f"request-revoked-{width}")

    page.goto("/grants/")
    row = page.get_by_test_id("grant-llama-7b")
    expect(row.get_by_test_id("grant-status")).to_have_text("Access revoked")
    expect(row.get_by_test_id("grant-reason")).to_have_text("Reason: Shared outside the lab.")
    _no_sideways_scroll(page)
    page.goto("/requests/")
    expect(page.get_by_test_id("request-status")).to_have_text("Access revoked for some models")
    _no_sideways_scroll(page)
