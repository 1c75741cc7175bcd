"""The whole access loop in a real browser, as two people see it.

A researcher applies for LLaMA 7B; a reviewer, logged in with a TOTP code in a
browser of their own, asks for more information; the researcher edits and
resubmits; the reviewer approves; the researcher accepts the license and the
grant is active. Assertions are on what each of them sees.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.helpers import log_in

USE_CASE = (
    "We study how instruction tuning changes factual recall in mid-sized language models. We will fine-tune "
    "the 7B model on public question-answering sets, measure recall on held-out entities and compare with the "
    "base weights. The work inspects intermediate activations layer by layer, which no hosted API exposes, so "
    "it needs the weights. Results will be published as an open-access paper, with our code."
)
QUESTION = "Which lab do you work in? Please add its web page."
REPLY = "I work in the Example NLP Lab; I added its page to my links."


def _mail_path(message, pattern: str) -> str:
    match = re.search(r"https?://[^/\s]+(" + pattern + r")", message.body)
    assert match, f"no link matching {pattern} in:\n{message.body}"
    return match.group(1)


def test_researcher_applies_reviewer_asks_for_more_then_approves_and_researcher_accepts_the_license(
    page: Page, reviewer_page: Page, researcher, llama_catalog, mailoutbox, screenshot
):
    # --- The researcher applies from the catalog. ---
    log_in(page, researcher.email)
    page.goto("/")
    page.get_by_test_id("apply-llama-7b").click()
    expect(page.get_by_role("heading", name="Apply for access to LLaMA")).to_be_visible()
    expect(page.get_by_role("checkbox", name=re.compile(r"^LLaMA 7B"))).to_be_checked()
    expect(page.get_by_text("needs 2 reviewers").first).to_be_visible()
    expect(page.get_by_test_id("license-text")).to_contain_text("1. What you may do")

    page.get_by_label("Full legal name").fill("Ada Lovelace")
    page.get_by_label("Affiliation").fill("University of Example")
    page.get_by_label("Organization type").select_option(label="Academic")
    page.get_by_label("Position").fill("Research fellow")
    page.get_by_label("Country").select_option(label="France")
    page.get_by_label("Research use case").fill(USE_CASE)
    page.get_by_label("Publications or profile links").fill("https://arxiv.org/abs/2302.13971")
    screenshot("apply-form")

    # Forgetting to agree to the license loses nothing typed.
    page.get_by_role("button", name="Submit request").click()
    expect(page.get_by_test_id("form-errors")).to_contain_text("Your request is not sent yet")
    # Said beside the box, and in the summary at the top, which links to it.
    expect(page.locator("#id_agree_error")).to_contain_text("Tick the box to agree to the license")
    expect(page.get_by_role("link", name="License: Tick the box to agree to the license")).to_be_visible()
    expect(page.get_by_label("Full legal name")).to_have_value("Ada Lovelace")
    expect(page.get_by_label("Research use case")).to_have_value(USE_CASE)
    expect(page.get_by_label("Country")).to_have_value("FR")
    expect(page.get_by_role("checkbox", name=re.compile(r"^LLaMA 7B"))).to_be_checked()
    screenshot("apply-form-errors")

    page.get_by_label("I have read the LLaMA Non-Commercial Research License, version 1.0").check()
    page.get_by_role("button", name="Submit request").click()

    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    reference = page.get_by_test_id("reference").inner_text()
    assert re.fullmatch(r"AR-[0-9A-Z]{6}", reference), reference
    expect(page.get_by_text(f"Your request {reference} is submitted.")).to_be_visible()
    expect(page.get_by_test_id("request-status")).to_have_text("Submitted")
    expect(page.get_by_test_id("next-step")).to_contain_text("Your request is number 1 in the queue.")
    expect(page.get_by_test_id("next-step")).to_contain_text("we expect a decision by")
    status_url = page.url
    screenshot("request-submitted")

    # --- The reviewer asks for more information. ---
    reviewer_page.goto("/review/")
    reviewer_page.get_by_role("link", name=reference).click()
    expect(reviewer_page.get_by_test_id("application")).to_contain_text("University of Example")
    reviewer_page.get_by_label("Message to the applicant").fill(QUESTION)
    reviewer_page.get_by_role("button", name="Send the question").click()
    expect(reviewer_page.get_by_text(f"More information requested for {reference}.")).to_be_visible()

    # --- The researcher follows the email, edits and resubmits. ---
    asked = [m for m in mailoutbox if m.to == [researcher.email] and "More information needed" in m.subject]
    assert len(asked) == 1
    page.goto(_mail_path(asked[0], r"/requests/\d+/"))
    assert page.url == status_url
    expect(page.get_by_test_id("request-status")).to_have_text("More information requested")
    expect(page.get_by_test_id("thread")).to_contain_text(QUESTION)
    expect(page.get_by_test_id("next-step")).to_contain_text("The reviewers need more information from you.")
    screenshot("request-info-requested")

    page.get_by_role("link", name="Edit & resubmit").click()
    expect(page.get_by_test_id("info-request")).to_contain_text(QUESTION)
    expect(page.get_by_label("Full legal name")).to_have_value("Ada Lovelace")
    page.get_by_label("Affiliation").fill("Example NLP Lab, University of Example")
    page.get_by_label("Publications or profile links").fill(
        "https://arxiv.org/abs/2302.13971\nhttps://nlp.example.edu/"
    )
    page.get_by_label("Your reply to the reviewers").fill(REPLY)
    screenshot("request-edit")
    page.get_by_role("button", name="Save and resubmit").click()

    expect(page).to_have_url(status_url)
    expect(page.get_by_text(f"{reference} is back with the reviewers")).to_be_visible()
    expect(page.get_by_test_id("request-status")).to_have_text("Submitted")
    expect(page.get_by_test_id("thread")).to_contain_text(REPLY)
    expect(page.get_by_test_id("history")).to_contain_text("Resubmitted")

    # --- The reviewer sees the change and approves. ---
    reviewer_page.reload()
    expect(reviewer_page.get_by_test_id("request-status")).to_have_text("Submitted")
    expect(reviewer_page.get_by_test_id("application")).to_contain_text("Example NLP Lab, University of Example")
    expect(reviewer_page.get_by_test_id("thread")).to_contain_text(REPLY)
    reviewer_page.get_by_role("button", name="Approve ticked models").click()
    expect(reviewer_page.get_by_text(f"{reference} is approved.")).to_be_visible()

    # --- The researcher accepts the license; the grant is active. ---
    page.reload()
    expect(page.get_by_test_id("request-status")).to_have_text("Approved")
    expect(page.get_by_test_id("next-step")).to_contain_text("Approved.")
    expect(page.get_by_test_id("outcomes")).to_contain_text("LLaMA 7B")
    screenshot("request-approved")
    page.get_by_test_id("nav-grants").click()
    grant_row = page.get_by_test_id("grant-llama-7b")
    expect(grant_row.get_by_test_id("grant-status")).to_have_text("Accept the license")
    screenshot("grants-license-required")
    grant_row.get_by_role("link", name="Read and accept the license").click()

    expect(page.get_by_role("heading", name="License for LLaMA 7B")).to_be_visible()
    expect(page.get_by_test_id("license-text")).to_contain_text("2. What you may not do")
    expect(page.get_by_test_id("license-version")).to_have_text("1.0")
    expect(page.get_by_test_id("license-sha256")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    screenshot("grant-license")
    page.get_by_role("button", name="Accept the license").click()
    expect(page.get_by_text("Tick the box to accept the license.")).to_be_visible()
    page.get_by_label("I accept the LLaMA Non-Commercial Research License, version 1.0.").check()
    page.get_by_role("button", name="Accept the license").click()

    expect(page).to_have_url(re.compile(r"/grants/$"))
    expect(page.get_by_text("Your access to LLaMA 7B is active.")).to_be_visible()
    expect(page.get_by_test_id("grant-llama-7b").get_by_test_id("grant-status")).to_have_text("Active")
    screenshot("grants-active")

    page.goto("/models/llama-7b/")
    expect(page.get_by_test_id("access-state")).to_have_text("Active")
