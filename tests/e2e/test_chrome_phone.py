"""The page chrome every page shares: the header at phone and desktop widths, the skip link,
the footer's status link and the way back from the API reference."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.helpers import log_in

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _fits_the_viewport(page: Page) -> bool:
    width, viewport = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    return width <= viewport


def test_header_folds_into_a_menu_on_a_phone_and_shows_its_links_inline_on_a_desktop(
    page: Page, researcher, screenshot
):
    log_in(page, researcher.email)
    page.set_viewport_size(PHONE)
    page.goto("/requests/")

    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_test_id("nav-requests")).to_be_hidden()
    expect(page.get_by_test_id("nav-account")).to_be_hidden()
    assert _fits_the_viewport(page)
    screenshot("chrome-menu-closed-390")

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    for test_id in ("nav-requests", "nav-grants", "nav-sandbox", "nav-account"):
        expect(page.get_by_test_id(test_id)).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert _fits_the_viewport(page)
    screenshot("chrome-menu-open-390")

    page.get_by_test_id("nav-grants").click()
    expect(page).to_have_url(re.compile(r"/grants/$"))
    expect(page.get_by_test_id("nav-grants")).to_be_hidden()  # a new page starts with the menu closed

    page.set_viewport_size(DESKTOP)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    for test_id in ("nav-requests", "nav-grants", "nav-sandbox", "nav-account"):
        expect(page.get_by_test_id(test_id)).to_be_visible()


def test_escape_closes_the_phone_menu_and_returns_focus_to_its_button(page: Page, llama_catalog):
    page.set_viewport_size(PHONE)
    page.goto("/")
    menu = page.get_by_role("button", name="Menu")
    menu.click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()

    page.keyboard.press("Escape")

    expect(page.get_by_role("link", name="Log in")).to_be_hidden()
    expect(menu).to_be_focused()


def test_skip_link_is_the_first_stop_and_jumps_to_the_content(page: Page, llama_catalog):
    page.goto("/")
    skip = page.get_by_role("link", name="Skip to content")
    box = skip.bounding_box()
    assert box is None or box["y"] + box["height"] <= 0  # out of sight until focused

    page.keyboard.press("Tab")

    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0  # visible on focus
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#content$"))
    assert page.evaluate("() => document.activeElement.id") == "content"


def test_footer_status_link_opens_a_page_in_words(page: Page, llama_catalog):
    page.goto("/")
    page.get_by_role("link", name="Service status").click()

    expect(page).to_have_url(re.compile(r"/status/$"))
    expect(page.get_by_role("heading", name="Service status")).to_be_visible()
    expect(page.get_by_test_id("status-summary")).to_contain_text("All working")
    checks = page.get_by_test_id("status-checks")
    for part in ("Database", "Task queue", "Weight storage"):
        expect(checks.get_by_role("row", name=re.compile(part))).to_contain_text("Working")


def test_api_reference_leads_back_to_the_portal(page: Page, llama_catalog):
    page.goto("/")
    page.get_by_role("link", name="API", exact=True).click()
    expect(page).to_have_url(re.compile(r"/api/docs/$"))
    # Swagger UI drew the schema (its scripts ran under the page's CSP).
    expect(page.get_by_text("/api/v1/models").first).to_be_visible()

    page.get_by_role("link", name="Back to the portal").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_test_id("catalog").first).to_be_visible()


def test_api_reference_fits_a_phone(page: Page, llama_catalog):
    page.set_viewport_size(PHONE)
    page.goto("/api/docs/")
    expect(page.get_by_text("/api/v1/models").first).to_be_visible()
    expect(page.get_by_role("link", name="Back to the portal")).to_be_visible()


def test_the_review_queue_filters_fold_on_a_phone_unless_one_is_in_use(reviewer_page: Page):
    page = reviewer_page
    page.set_viewport_size(PHONE)
    page.goto("/review/")
    filters = page.get_by_test_id("queue-filters")
    expect(filters).to_be_hidden()
    page.get_by_text("Filters", exact=True).click()
    expect(filters).to_be_visible()
    expect(page.get_by_label("Status")).to_be_visible()

    # A filter in use stays in sight, so the reviewer sees why the list is short.
    page.goto("/review/?status=approved")
    expect(filters).to_be_visible()
    expect(page.get_by_text("(in use)")).to_be_visible()

    page.set_viewport_size(DESKTOP)
    page.goto("/review/")
    expect(filters).to_be_visible()
    expect(page.get_by_text("Filters", exact=True)).to_be_hidden()
