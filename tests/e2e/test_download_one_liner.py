"""The downloads page's one-line command for a cluster without a browser, run for real: the
command shown on the page, piped to sh with curl and with wget, fetches every file into the
current folder and checks it (issue 15, item 8)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from playwright.sync_api import Page, expect

from access.distribution.bundles import bundle_current
from tests.access.distribution.served import served_sha256
from tests.e2e.helpers import log_in


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_the_one_liner_on_the_downloads_page_fetches_and_checks_every_file(
    page: Page, researcher, reviewer, published_demo_weights, active_grant_make, tmp_path, tool
):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is needed to run the one-liner")
    variant, source_dir, weight_files = published_demo_weights
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    log_in(page, researcher.email)
    page.goto(f"/grants/{grant.pk}/downloads/")
    page.get_by_role("button", name="Create download links").click()

    command = page.get_by_test_id(f"one-liner-{tool}")
    expect(command).to_contain_text("| sh")
    # As a researcher does it: the Copy button, then paste into the cluster's shell.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.get_by_role("button", name=f"Copy the {tool} command")
    copy.click()
    expect(copy).to_have_text("Copied")
    text = page.evaluate("() => navigator.clipboard.readText()").strip()
    assert text == command.inner_text().strip()
    assert text.startswith("curl -fsSL 'http" if tool == "curl" else "wget -qO- 'http")

    run = subprocess.run(["sh", "-c", text], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Checking sha256 sums" in run.stdout
    target = tmp_path / variant.slug  # the current folder, as the page says
    links = {link.file.name: link for link in bundle_current(grant).links.select_related("file", "copy")}
    for weight_file in weight_files:
        data = (target / weight_file.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == served_sha256(links[weight_file.name])
        if weight_file.name in ("params.json", "tokenizer.model"):
            assert data == (source_dir / weight_file.name).read_bytes()
        else:  # the researcher's own: fingerprinted shards, and the checklist of their md5s
            assert data != (source_dir / weight_file.name).read_bytes()
