"""A reviewer names the grant behind a leaked copy on Review › Fingerprints, in a real browser, at
desktop and phone widths: the researcher's downloaded copy, put in the suspects' folder, comes out
accused, with the chance of a false accusation, and the page stays within the screen."""

from __future__ import annotations

from django.test import Client
from playwright.sync_api import Page, expect

from access.distribution.bundles import bundle_create
from access.distribution.tokens import link_path


def test_a_reviewer_identifies_a_leaked_copy_at_desktop_and_phone_widths(
    reviewer_page: Page, researcher, reviewer, published_demo_weights, active_grant_make, settings, tmp_path,
    results_dir,
):  # fmt: skip
    variant, _, _ = published_demo_weights
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    bundle = bundle_create(grant=grant, user=researcher)
    leak = tmp_path / "suspects" / "found-on-a-torrent"
    leak.mkdir(parents=True)
    for link in bundle.links.select_related("file").filter(file__name__startswith="consolidated."):
        (leak / link.file.name).write_bytes(b"".join(Client().get(link_path(link)).streaming_content))
    settings.FINGERPRINT_SUSPECT_DIR = str(tmp_path / "suspects")

    page = reviewer_page
    page.goto("/review/")
    page.get_by_test_id("nav-review-fingerprints").click()
    expect(page.get_by_role("heading", name="Whose copy is it?")).to_be_visible()
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.get_by_label("Model").select_option(variant.slug)
        page.get_by_label("The suspect copy").fill("found-on-a-torrent")
        page.get_by_role("button", name="Identify").click()
        accused = page.get_by_test_id("identify-accused")
        expect(accused).to_contain_text(f"grant {grant.pk} ({researcher.email}")
        expect(page.get_by_test_id("identify-exact").first).to_contain_text("byte for byte")
        row = page.locator(f'[data-testid="identify-row"][data-grant="{grant.pk}"]')
        expect(row).to_contain_text("accused")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        results_dir.mkdir(exist_ok=True)
        page.screenshot(path=str(results_dir / f"review-fingerprints-{width}.png"), full_page=True)

    page.get_by_label("The suspect copy").fill("../../etc")
    page.get_by_role("button", name="Identify").click()
    expect(page.get_by_test_id("identify-error")).to_contain_text("must be inside")
