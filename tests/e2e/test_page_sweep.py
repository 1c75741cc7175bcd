"""Every main page, at a desktop width and a phone's: no serious or critical accessibility
violation (axe-core), and nothing that makes the page scroll sideways.

Each persona's pages are visited in one browser context at 1280 px, then again at 390 px (an
iPhone 12-15's CSS width). Failures are collected across pages so one run names them all.
Screenshots of the pages the issue names (apply form, request status, review queue,
playground, downloads) are saved at both widths under test-results/screens/ for a person to
look at.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from playwright.sync_api import Page

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.distribution.bundles import bundle_create
from access.requests.application import ApplicationData
from access.requests.services import access_request_submit
from access.review.services import access_request_claim
from tests.axe_core import AXE_CORE_PATH, axe_violations, violations_text
from tests.e2e.helpers import log_in

WIDTHS = (1280, 390)
PHONE_HEIGHT = 844

USE_CASE = (
    "We study how factual knowledge is stored in the feed-forward layers of large language models. "
    "With the weights we will run causal tracing and activation patching, compare where facts are "
    "stored across model sizes, and test whether targeted edits generalise to paraphrases. All "
    "experiments run on our university cluster and the weights never leave it; code and results "
    "will be published openly."
)


@dataclass
class SweepPage:
    name: str
    path: str
    screenshot: bool = False


@pytest.fixture(autouse=True)
def _axe_core_is_there(unavailable):
    if not AXE_CORE_PATH.exists():
        unavailable(None, f"needs axe-core at {AXE_CORE_PATH} (make test fetches it: python -m tests.axe_core)")


@pytest.fixture
def sweep_world(researcher, reviewer, published_demo_weights, active_grant_make):
    """A researcher with an open request for two sizes (one needing two reviewers), claimed by
    the reviewer, and an active grant for the demo model with download links."""
    demo, _, _ = published_demo_weights
    variants = list(ModelVariant.objects.filter(slug__in=["llama-7b", "llama-65b"]).order_by("position"))
    open_request = access_request_submit(
        applicant=researcher,
        variants=variants,
        data=ApplicationData(
            full_name="Ada Lovelace",
            affiliation="University of Example",
            organization_type="academic",
            position="Postdoctoral researcher",
            country="GB",
            use_case=USE_CASE,
            publications=["https://scholar.example.org/ada"],
        ),
        license_version=license_current(variants[0].family),
    )
    access_request_claim(access_request=open_request, reviewer=reviewer)
    grant = active_grant_make(user=researcher, variant=demo, reviewer=reviewer)
    bundle_create(grant=grant, user=researcher)
    return {"request": open_request, "grant": grant, "demo": demo}


def _sweep(page: Page, pages: list[SweepPage], results_dir) -> None:
    """Visit each page at each width; fail once, naming every problem found."""
    problems: list[str] = []
    screens = results_dir / "screens"
    screens.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900 if width > 600 else PHONE_HEIGHT})
        for sweep_page in pages:
            where = f"{sweep_page.name} ({sweep_page.path}) at {width} px"
            response = page.goto(sweep_page.path)
            if response is None or response.status != 200:
                problems.append(f"{where}: HTTP {response.status if response else 'no response'}")
                continue
            page.wait_for_load_state("load")
            overflow = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            if overflow[0] > overflow[1]:
                wide = page.evaluate(
                    """() => {
                        const limit = document.documentElement.clientWidth + 1;
                        const past = e => e.getBoundingClientRect().right > limit;
                        // The innermost elements that stick out: their children all fit.
                        return Array.from(document.querySelectorAll('body *'))
                            .filter(e => past(e) && !Array.from(e.children).some(past))
                            .slice(0, 4)
                            .map(e => e.tagName.toLowerCase()
                                + (e.className ? '.' + String(e.className).split(' ').join('.') : ''));
                    }"""
                )
                problems.append(
                    f"{where}: the document is {overflow[0]} px wide, wider than the {overflow[1]} px "
                    f"viewport; widest elements: {', '.join(wide)}"
                )
            violations = axe_violations(page)
            if violations:
                problems.append(f"{where}: axe-core found\n{violations_text(violations)}")
            if sweep_page.screenshot:
                page.screenshot(path=str(screens / f"{sweep_page.name}-{width}.png"), full_page=True)
    assert not problems, "\n".join(problems)


def test_public_pages_work_for_everyone_at_desktop_and_phone_widths(page: Page, llama_catalog, results_dir):
    llama_7b = ModelVariant.objects.get(slug="llama-7b")
    license_version = license_current(llama_7b.family)
    _sweep(
        page,
        [
            SweepPage("catalog", "/"),
            SweepPage("model", f"/models/{llama_7b.slug}/"),
            SweepPage("license", f"/licenses/{license_version.pk}/"),
            SweepPage("login", "/accounts/login/"),
            SweepPage("signup", "/accounts/signup/"),
            SweepPage("status", "/status/"),
        ],
        results_dir,
    )


def test_a_researchers_pages_work_at_desktop_and_phone_widths(page: Page, researcher, sweep_world, results_dir):
    log_in(page, researcher.email)
    _sweep(
        page,
        [
            SweepPage("apply", "/apply/", screenshot=True),
            SweepPage("requests", "/requests/"),
            SweepPage("request-status", f"/requests/{sweep_world['request'].pk}/", screenshot=True),
            SweepPage("my-access", "/grants/"),
            SweepPage("downloads", f"/grants/{sweep_world['grant'].pk}/downloads/", screenshot=True),
            SweepPage("playground", "/sandbox/", screenshot=True),
            SweepPage("sandbox-usage", "/sandbox/usage/"),
            SweepPage("account", "/account/"),
        ],
        results_dir,
    )


def test_a_reviewers_pages_work_at_desktop_and_phone_widths(
    reviewer_page: Page, researcher, sweep_world, results_dir
):
    _sweep(
        reviewer_page,
        [
            SweepPage("review-queue", "/review/", screenshot=True),
            SweepPage("review-request", f"/review/requests/{sweep_world['request'].pk}/", screenshot=True),
            SweepPage("review-grants", "/review/grants/"),
            SweepPage("review-downloads", f"/review/grants/{sweep_world['grant'].pk}/downloads/"),
            SweepPage("review-stats", "/review/stats/"),
            SweepPage("review-fingerprints", "/review/fingerprints/"),
            SweepPage("review-sandbox", "/review/sandbox/"),
            SweepPage("review-sandbox-user", f"/review/sandbox/users/{researcher.pk}/"),
        ],
        results_dir,
    )
