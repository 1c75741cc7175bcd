"""Downloading the weights in a real browser, and a reviewer lifting a leak suspension.

A researcher with an active grant creates download links on the grant's page and
downloads a file with the browser; the links are then used from too many networks
(requests through a trusted proxy naming other client addresses), so the leak rule
suspends them; a reviewer finds the alert, looks at the requests and lifts the
suspension; the researcher downloads again. Assertions are on what each of them sees.
"""

from __future__ import annotations

import hashlib
import re

from playwright.sync_api import Page, expect

from tests.e2e.helpers import log_in

# Four /24 networks besides the researcher's own: one more than the default limit of 3.
OTHER_NETWORKS = ["198.51.100.7", "203.0.113.9", "192.0.2.33", "100.64.12.5"]


def test_researcher_downloads_then_a_reviewer_lifts_a_leak_suspension(
    page: Page,
    reviewer_page: Page,
    researcher,
    reviewer,
    published_demo_weights,
    settings,
    screenshot,
    active_grant_make,
    results_dir,
):
    variant, _, _ = published_demo_weights
    active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    # The live server sees every request from 127.0.0.1; behind one trusted proxy, the
    # X-Forwarded-For header names the client, as it does in the compose deployment.
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3

    # --- The researcher creates links and downloads a file. ---
    log_in(page, researcher.email)
    page.get_by_test_id("nav-grants").click()
    page.get_by_test_id("grant-llama-demo-tiny").get_by_test_id("grant-downloads").click()
    expect(page.get_by_role("heading", name="Download LLaMA demo (tiny)")).to_be_visible()
    expect(page.get_by_test_id("next-step")).to_contain_text("Create your download links.")
    page.get_by_role("button", name="Create download links").click()

    expect(page.get_by_test_id("next-step")).to_contain_text("Your links work until")
    rows = page.get_by_test_id("file-row")
    expect(rows).to_have_count(5)
    params = page.locator('[data-testid="file-row"][data-file="params.json"]')
    expect(params.get_by_test_id("downloads-left")).to_have_text("5 of 5")
    expected_sha256 = params.get_by_test_id("file-sha256").inner_text()
    screenshot("downloads-links")

    with page.expect_download() as download:
        params.get_by_test_id("file-link").click()
    assert download.value.suggested_filename == "params.json"
    with open(download.value.path(), "rb") as saved:
        assert hashlib.sha256(saved.read()).hexdigest() == expected_sha256
    page.reload()
    expect(params.get_by_test_id("downloads-left")).to_have_text("4 of 5")
    link = params.get_by_test_id("file-link").get_attribute("href")

    # --- The link is passed around: requests from four more networks. ---
    statuses = [
        page.request.get(link, headers={"X-Forwarded-For": address}, max_redirects=0).status
        for address in OTHER_NETWORKS
    ]
    # The researcher's own network and two more are within the limit; the fourth network trips it.
    assert statuses == [200, 200, 403, 403]

    page.reload()
    expect(page.get_by_test_id("next-step")).to_contain_text("Your download links were suspended")
    expect(page.get_by_test_id("file-link")).to_have_count(0)
    assert page.request.get(link).status == 403
    screenshot("downloads-suspended")

    # --- The reviewer sees the alert, reads the requests and lifts the suspension. ---
    reviewer_page.goto("/review/")
    alert = reviewer_page.get_by_test_id("leak-alert")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text(researcher.email)
    alert.get_by_role("link", name="Downloads").click()
    expect(reviewer_page.get_by_test_id("grant-status")).to_have_text(re.compile("Active"))
    bundle_row = reviewer_page.get_by_test_id("bundle-row")
    expect(bundle_row).to_have_attribute("data-state", "suspended")
    events = reviewer_page.get_by_test_id("event-row")
    for address in OTHER_NETWORKS:
        expect(reviewer_page.get_by_test_id("download-events")).to_contain_text(address)
    expect(events.filter(has_text="bundle_suspended").first).to_be_visible()
    reviewer_page.screenshot(path=str(results_dir / "review-downloads-suspended.png"), full_page=True)

    reviewer_page.get_by_role("button", name="Lift suspension").click()  # the reason is required
    expect(bundle_row).to_have_attribute("data-state", "suspended")
    bundle_row.get_by_placeholder("Why, for the audit log").fill("Asked the researcher: a shared lab cluster.")
    bundle_row.get_by_role("button", name="Lift suspension").click()
    lifted = f"The suspension is lifted; {researcher.email} can download again."
    expect(reviewer_page.get_by_text(lifted)).to_be_visible()
    expect(reviewer_page.get_by_test_id("bundle-row")).to_have_attribute("data-state", "live")

    # --- The researcher's links work again. ---
    page.reload()
    expect(page.get_by_test_id("next-step")).to_contain_text("Your links work until")
    # The browser's download and the two requests that got through before the limit used three.
    expect(params.get_by_test_id("downloads-left")).to_have_text("2 of 5")
    assert page.request.get(link).status == 200
    screenshot("downloads-after-lift")
