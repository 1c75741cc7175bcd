"""A reviewer's pages in a real browser, at 1280 px and on a 390 px phone: the queue marks a request
whose applicant replied and filters on it, the bulk action waits for a decision, the request's
history reads as sentences with each flag once, and a grant is revoked from the request's page,
which emails the researcher. At 390 px the queue, a request and the grants page reflow: the
document never scrolls sideways (wide tables scroll inside their own box)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.models import Grant, GrantStatus
from access.requests.application import ApplicationData
from access.requests.services import access_request_resubmit, access_request_submit
from access.review.services import access_request_approve, access_request_request_info
from portal import roles
from tests.factories import UserFactory

PHONE = {"width": 390, "height": 844}
USE_CASE = (
    "We study how factual knowledge is stored in the feed-forward layers of large language models, "
    "with causal tracing and activation patching across model sizes, on our university cluster. "
    "Results and code will be published openly; the weights never leave the cluster."
)


def _submit(applicant, *slugs: str, full_name: str):
    variants = list(ModelVariant.objects.filter(slug__in=slugs).order_by("position"))
    return access_request_submit(
        applicant=applicant,
        variants=variants,
        data=ApplicationData(
            full_name=full_name,
            affiliation="University of Example, Department of Computer Science and Technology",
            organization_type="academic",
            position="Postdoctoral researcher",
            country="GB",
            use_case=USE_CASE,
            publications=["https://scholar.example.org/a-rather-long-profile-address-that-could-widen-a-page"],
        ),
        license_version=license_current(variants[0].family),
    )


@pytest.fixture
def review_world(researcher, llama_catalog):
    """A free-mail applicant who answered a question (flagged in both rounds), and Ada's request
    approved for two models by a second reviewer."""
    second_reviewer = UserFactory(email="sam.second@lab.example.org", role=roles.REVIEWER)
    gus = UserFactory(email="gus.with.a.long.address@gmail.com")
    replied = _submit(gus, "llama-7b", full_name="Gus Gmail")
    access_request_request_info(access_request=replied, reviewer=second_reviewer, message="Which lab?")
    access_request_resubmit(access_request=replied, applicant=gus, message="The NLP lab, since March.")
    approved = access_request_approve(
        access_request=_submit(researcher, "llama-7b", "llama-13b", full_name="Ada Lovelace"),
        reviewer=second_reviewer,
    )
    return {"replied": replied, "approved": approved}


def _document_fits(page: Page) -> None:
    width, viewport = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"{page.url}: the document is {width} px wide in a {viewport} px viewport"


def test_reviewer_pages_at_desktop_and_phone_width(reviewer_page: Page, review_world, mailoutbox, results_dir):
    page = reviewer_page

    def screenshot(name: str) -> None:
        results_dir.mkdir(exist_ok=True)
        page.screenshot(path=str(results_dir / f"{name}.png"), full_page=True)
    replied, approved = review_world["replied"], review_world["approved"]

    # --- The queue: the reply is marked, and the filter finds it. ---
    page.goto("/review/")
    row = page.locator(f'[data-testid="queue-row"][data-reference="{replied.reference}"]')
    expect(row.get_by_test_id("applicant-replied")).to_have_text("Applicant replied")
    expect(row.locator(".badge.flag")).to_have_count(1)  # flagged in both rounds, listed once
    page.get_by_label("Applicant", exact=True).select_option("yes")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("queue-row")).to_have_count(1)
    expect(page.get_by_test_id("queue-row")).to_have_attribute("data-reference", replied.reference)

    # --- The bulk action waits for a decision. ---
    decision = page.get_by_label("Decision")
    expect(decision).to_have_value("")
    expect(decision.locator("option:checked")).to_have_text("Choose…")
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Apply to ticked requests").click()
    assert decision.evaluate("select => select.validity.valueMissing")  # the browser asks for a choice
    expect(page).to_have_url(re.compile(r"replied=yes"))  # not submitted
    screenshot("review-queue-1280")

    # --- The request: history in words, each flag once. ---
    row.get_by_role("link", name=replied.reference).click()
    history = page.get_by_test_id("history")
    expect(history).to_contain_text("Submitted by gus.with.a.long.address@gmail.com for LLaMA 7B")
    expect(history).to_contain_text("More information asked of the applicant by sam.second@lab.example.org")
    expect(history).to_contain_text("Resubmitted by gus.with.a.long.address@gmail.com (review round 2)")
    expect(history).to_contain_text("Screening flag: Free-mail email domain")
    expect(history).not_to_contain_text("access_request.")
    expect(page.get_by_test_id("flags").get_by_test_id("flag")).to_have_count(1)
    screenshot("review-detail-1280")

    # --- Revoke from the approved request's page: a visible action, a reason, a named button. ---
    page.goto(f"/review/requests/{approved.pk}/")
    grant_7b = page.locator('[data-testid="applicant-grant"]', has_text="LLaMA 7B")
    grant_7b.get_by_test_id("revoke-open").click()
    grant_7b.get_by_label("Why revoke? The researcher is emailed this reason.").fill("Weights on a public share.")
    mailoutbox.clear()
    grant_7b.get_by_role("button", name="Revoke access to LLaMA 7B").click()
    expect(page.get_by_text("Access to LLaMA 7B for ada@uni.example.edu is revoked.")).to_be_visible()
    expect(grant_7b.locator(".access")).to_have_text("Revoked")
    expect(grant_7b.get_by_test_id("revoke-open")).to_have_count(0)
    assert Grant.objects.get(request=approved, variant__slug="llama-7b").status == GrantStatus.REVOKED
    assert [m.to for m in mailoutbox] == [["ada@uni.example.edu"]]
    assert "Delete every copy of its weights" in mailoutbox[0].body

    # --- The grants page names the researcher. ---
    page.goto("/review/grants/")
    expect(page.get_by_test_id("grant-researcher").first).to_contain_text("Ada Lovelace")
    expect(page.get_by_test_id("grant-row").first.get_by_test_id("suspend-open")).to_be_visible()
    screenshot("review-grants-1280")

    # --- On a phone: nothing scrolls sideways. ---
    page.set_viewport_size(PHONE)
    for path, name in (
        ("/review/", "review-queue-390"),
        (f"/review/requests/{replied.pk}/", "review-detail-390"),
        (f"/review/requests/{approved.pk}/", None),
        ("/review/grants/", None),
    ):
        page.goto(path)
        _document_fits(page)
        if name:
            screenshot(name)
    # The remaining grant's actions fit the phone, opened too.
    page.goto(f"/review/requests/{approved.pk}/#grants")
    grant_13b = page.locator('[data-testid="applicant-grant"]', has_text="LLaMA 13B")
    grant_13b.get_by_test_id("suspend-open").click()
    expect(grant_13b.get_by_role("button", name="Suspend access to LLaMA 13B")).to_be_visible()
    _document_fits(page)
    page.get_by_test_id("applicant-grants").screenshot(path=str(results_dir / "review-detail-grants-390.png"))
    # The queue's rows are still there to act on, one card per request.
    page.goto("/review/")
    expect(page.locator(f'[data-testid="queue-row"][data-reference="{replied.reference}"]')).to_be_visible()
    expect(page.get_by_label("Decision")).to_be_visible()
