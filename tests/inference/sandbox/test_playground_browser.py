"""The playground in a real browser (Debian's Chromium driven by Playwright) against a live server
with a real sandbox worker process behind the broker: a researcher streams a greedy completion,
which arrives in pieces and ends as exactly the engine's own text (`llama_generate --json`), with
tokens per second and the usage filled in; chat mode goes to /v1/chat/completions; Stop ends the
stream and cancels the job through the jobs API; a refused request shows the API's message; and
the sandbox's pages fit a phone's width (390 px) without scrolling sideways, the reviewers' too.

The browser harness is tests/e2e's (its Chromium flags, timeouts and login helper); the worker,
the published demo weights and the grant are this folder's fixtures (conftest.py)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from inference.sandbox.models import JobStatus, SandboxJob
from tests.browser_fixtures import TIMEOUT_MS
from tests.e2e.conftest import RESULTS_DIR
from tests.e2e.helpers import log_in
from tests.inference.sandbox.reference import llama_generate_json

pytestmark = [pytest.mark.browser, pytest.mark.real_worker]

PROMPT = "The capital of France is"
MAX_TOKENS = 32
PHONE = {"width": 390, "height": 844}
# Each piece of output the page shows, in order: the text node that replaces the old one on every
# append is recorded as it is, so pieces that arrive in one network read still count one by one.
RECORD_PIECES = """() => {
  window.__pieces = [];
  const output = document.getElementById("output");
  new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) window.__pieces.push(node.textContent);
  }).observe(output, { childList: true, characterData: true, subtree: true });
}"""
PAGE_WIDTH = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"


@pytest.fixture
def new_page(browser, live_server, request):
    """new_page(): a browser page with cookies of its own, on the live server; on failure a
    screenshot lands in test-results/; a Content-Security-Policy violation fails the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    contexts, errors = [], []
    failures_before = request.session.testsfailed

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        return page

    yield make
    failed = request.session.testsfailed > failures_before  # counted before teardown starts
    for index, context in enumerate(contexts):
        if failed and context.pages:
            RESULTS_DIR.mkdir(exist_ok=True)
            context.pages[0].screenshot(
                path=str(RESULTS_DIR / f"FAILED-{request.node.name}-{index}.png"), full_page=True
            )
        context.close()
    if failed and errors:
        print("browser console errors:\n  " + "\n  ".join(errors))
    violations = [error for error in errors if "Content Security Policy" in error]
    assert not violations, violations


def _assert_fits_a_phone(page, name: str) -> Path:
    page.set_viewport_size(PHONE)
    scroll_width, client_width = page.evaluate(PAGE_WIDTH)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"sandbox-phone-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert scroll_width <= client_width == PHONE["width"], f"{name} is {scroll_width} px wide at 390 px: {path}"
    return path


def test_a_researcher_streams_a_greedy_completion_in_the_playground(
    new_page, researcher, reviewer, demo_grant, demo_checkpoint, sandbox_worker
):
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import decrypt
    from playwright.sync_api import expect

    reference = llama_generate_json(demo_checkpoint, PROMPT, MAX_TOKENS)
    page = new_page()
    log_in(page, researcher.email)

    page.get_by_test_id("nav-sandbox").click()
    expect(page.get_by_role("heading", name="Sandbox", exact=True)).to_be_visible()
    expect(page.locator("#playground")).to_have_attribute("data-ready", "true")
    expect(page.get_by_label("Model")).to_have_value("llama-demo-tiny")
    expect(page.get_by_test_id("retention-notice")).to_contain_text("kept for")
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Max tokens").fill(str(MAX_TOKENS))
    page.get_by_label("Temperature").fill("0")
    # The snippets follow the form, with the absolute base URL and no token in them.
    expect(page.get_by_test_id("snippet-curl")).to_contain_text(f'"prompt":"{PROMPT}"')
    expect(page.get_by_test_id("snippet-python")).to_contain_text(f'base_url="{page.url.split("/sandbox/")[0]}/v1/"')
    expect(page.get_by_test_id("snippet-lm-eval")).to_contain_text(
        f'model=llama-demo-tiny,base_url={page.url.split("/sandbox/")[0]}/sandbox/llama-demo-tiny/v1/completions,'
    )
    page.evaluate(RECORD_PIECES)

    page.get_by_test_id("run").click()

    expect(page.get_by_test_id("run-state")).to_contain_text("Done", timeout=60_000)
    expect(page.locator("#playground")).to_have_attribute("data-refreshed", "1")  # the records below, updated
    assert page.get_by_test_id("run-error").is_hidden()
    assert page.get_by_test_id("output").text_content() == reference["text"], sandbox_worker.log()
    pieces = page.evaluate("() => window.__pieces")
    assert len(pieces) > 1 and pieces[-1] == reference["text"]  # it came in pieces, each a prefix of the next
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(pieces))
    assert float(page.get_by_test_id("tokens-per-second").text_content()) > 0
    expect(page.get_by_test_id("prompt-tokens")).to_have_text(str(len(reference["prompt_tokens"])))
    expect(page.get_by_test_id("completion-tokens")).to_have_text(str(len(reference["tokens"])))
    expect(page.get_by_test_id("finish-reason")).to_have_text(
        "length" if len(reference["tokens"]) == MAX_TOKENS else "stop"
    )
    job = SandboxJob.objects.get()
    assert (job.status, job.source, job.outputs) == (JobStatus.SUCCEEDED, "playground", [reference["text"]])
    expect(page.get_by_test_id("job-row")).to_have_count(1)
    expect(page.get_by_test_id("tokens-today")).to_have_text(str(job.total_tokens))
    RESULTS_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS_DIR / "sandbox-playground.png"), full_page=True)

    # The job's record, then the playground's recent jobs and today's use.
    page.get_by_test_id("job-record").click()
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded")
    assert page.get_by_test_id("job-output").text_content() == reference["text"]
    _assert_fits_a_phone(page, "job")
    page.goto("/sandbox/")
    _assert_fits_a_phone(page, "playground")
    page.goto("/sandbox/usage/")
    _assert_fits_a_phone(page, "usage")

    # The reviewers' pages at a phone's width too.
    reviewer_page = new_page()
    secret = decrypt(Authenticator.objects.get(user=reviewer, type=Authenticator.Type.TOTP).data["secret"])
    log_in(reviewer_page, reviewer.email, totp_secret=secret)
    reviewer_page.goto("/review/sandbox/")
    reviewer_page.get_by_role("link", name=researcher.email).click()
    reviewer_page.get_by_text("Prompt and output").click()
    expect(reviewer_page.get_by_test_id("review-output")).to_have_text(reference["text"])
    _assert_fits_a_phone(reviewer_page, "review-user")
    reviewer_page.goto("/review/sandbox/")
    _assert_fits_a_phone(reviewer_page, "review-usage")


def test_a_refused_request_shows_the_apis_message(new_page, researcher, demo_grant, settings):
    from playwright.sync_api import expect

    page = new_page()
    log_in(page, researcher.email)
    page.goto("/sandbox/")
    expect(page.locator("#playground")).to_have_attribute("data-ready", "true")
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Max tokens").fill(str(settings.SANDBOX_MAX_TOKENS + 1))

    page.get_by_test_id("run").click()

    expect(page.get_by_test_id("run-error")).to_contain_text("'max_tokens' must be a whole number from 1 to")
    expect(page.get_by_test_id("run-state")).to_have_text("Refused.")
    expect(page.get_by_test_id("run")).to_be_enabled()
    assert page.get_by_test_id("output").text_content() == ""
    assert not SandboxJob.objects.exists()


def test_stop_ends_the_stream_and_cancels_the_job(new_page, researcher, demo_grant, sandbox_worker):
    from playwright.sync_api import expect

    page = new_page()
    log_in(page, researcher.email)
    page.goto("/sandbox/")
    expect(page.locator("#playground")).to_have_attribute("data-ready", "true")
    page.get_by_label("Prompt").fill(PROMPT)
    page.get_by_label("Max tokens").fill("1000")
    page.get_by_label("Temperature").fill("0")

    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("output")).not_to_have_text("", timeout=60_000)
    with page.expect_response(lambda response: response.url.endswith("/cancel")) as cancel:
        page.get_by_test_id("stop").click()

    assert cancel.value.status == 200
    expect(page.get_by_test_id("run-state")).to_have_text("Stopped.")
    expect(page.get_by_test_id("stop")).to_be_disabled()
    expect(page.get_by_test_id("run")).to_be_enabled()
    job = SandboxJob.objects.get()
    deadline = time.monotonic() + 10
    while SandboxJob.objects.get(pk=job.pk).status != JobStatus.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.1)
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.CANCELLED, "cancelled"), sandbox_worker.log()
    assert job.completion_tokens < 1000


def test_chat_mode_sends_the_message_to_chat_completions(new_page, researcher, demo_grant, sandbox_worker):
    from playwright.sync_api import expect

    page = new_page()
    log_in(page, researcher.email)
    page.goto("/sandbox/")
    expect(page.locator("#playground")).to_have_attribute("data-ready", "true")
    page.get_by_label("Chat").check()
    page.get_by_label("Your message").fill("Say hello.")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Temperature").fill("0")
    expect(page.get_by_test_id("snippet-python")).to_contain_text("client.chat.completions.create(")

    page.get_by_test_id("run").click()

    expect(page.get_by_test_id("run-state")).to_contain_text("Done", timeout=60_000)
    job = SandboxJob.objects.get()
    assert (job.endpoint, job.status) == ("chat.completions", JobStatus.SUCCEEDED), sandbox_worker.log()
    assert "### User:\nSay hello." in job.prompts[0]
    assert page.get_by_test_id("output").text_content() == job.outputs[0]
    expect(page.get_by_test_id("completion-tokens")).to_have_text(str(job.completion_tokens))
