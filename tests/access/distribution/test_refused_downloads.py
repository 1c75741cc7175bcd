"""A revoked or suspended grant, as the people involved meet it after the fact: the reviewers'
download log shows its bundles as dead, and download.sh (run with curl, with wget, and piped
into sh) prints the portal's own one-line reason for refusing a link."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request

import pytest
from django.urls import reverse

from access.distribution.bundles import bundle_create
from access.distribution.tokens import bundle_script_path
from access.grants.services import grant_revoke, grant_suspend
from tests.access.distribution.served import served_bytes

REVOKED_REASON = "Your access to this model was revoked; these links no longer work."


def _bundle_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-testid="bundle-row".*?</tr>', page, re.S)


# --- The reviewers' download log -------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "label"),
    [(grant_revoke, "Dead: grant revoked"), (grant_suspend, "Dead: grant suspended")],
    ids=["revoked", "suspended"],
)
def test_the_download_log_shows_an_ended_grants_bundles_as_dead_never_live(
    reviewer_client, researcher, reviewer, grant, end, label
):
    replaced = bundle_create(grant=grant, user=researcher)
    current = bundle_create(grant=grant, user=researcher)
    url = reverse("review-grant-downloads", args=[grant.pk])
    before = _bundle_rows(reviewer_client.get(url).content.decode())
    assert 'data-state="live"' in before[0] and "Dead" not in before[0]

    end(grant=grant, actor=reviewer, reason="Shared the weights.")
    page = reviewer_client.get(url).content.decode()

    newest, older = _bundle_rows(page)
    assert current.public_id in newest and 'data-state="dead"' in newest and label in newest
    assert "No link of this bundle works." in newest
    assert current.expires_at.strftime("%Y-%m-%d %H:%M") not in newest.split("<td>", 3)[2]  # no expiry shown
    assert replaced.public_id in older and 'data-state="replaced"' in older  # it was dead already
    assert 'data-state="live"' not in page and ">Live<" not in page


# --- download.sh ----------------------------------------------------------------------------


def _script(live_server, bundle, tmp_path):
    with urllib.request.urlopen(live_server.url + bundle_script_path(bundle), timeout=10) as response:
        script = tmp_path / "download.sh"
        script.write_bytes(response.read())
    return script


def _path_without_curl(tmp_path) -> str:
    """A PATH with the tools download.sh uses, wget among them, and no curl."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "wget", "awk", "sed", "tr", "cut", "rm", "mkdir", "wc", "md5sum", "sha256sum", "cat"):
        os.symlink(shutil.which(tool), tools / tool)
    return str(tools)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("client_tool", ["curl", "wget"])
def test_download_sh_prints_the_portals_reason_when_the_grant_was_revoked(
    live_server, bundle, reviewer, tmp_path, client_tool
):
    script = _script(live_server, bundle, tmp_path)
    grant_revoke(grant=bundle.grant, actor=reviewer, reason="Weights found on a public share.")
    env = {**os.environ, "PATH": _path_without_curl(tmp_path)} if client_tool == "wget" else None

    run = subprocess.run(
        ["sh", str(script), str(tmp_path / "weights")], capture_output=True, text=True, timeout=60, env=env
    )

    assert run.returncode == 1
    line = run.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"download\.sh: llama-demo-tiny/\S+: refused \(403\): {re.escape(REVOKED_REASON)}", line), (
        run.stderr
    )
    # Nothing of the refusal is left behind as if it were a file.
    assert [p.name for p in (tmp_path / "weights" / "llama-demo-tiny").iterdir()] == []


@pytest.mark.django_db(transaction=True)
def test_download_sh_says_a_suspended_grants_links_are_refused_and_why(live_server, bundle, reviewer, tmp_path):
    script = _script(live_server, bundle, tmp_path)
    grant_suspend(grant=bundle.grant, actor=reviewer, reason="Checking an affiliation.")

    run = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert run.returncode == 1
    assert "refused (403): Your access to this model is suspended; a reviewer will contact you." in run.stderr


@pytest.mark.django_db(transaction=True)
def test_download_sh_piped_into_sh_downloads_and_verifies_into_the_folder_given(
    live_server, bundle, published_demo_weights, tmp_path
):
    _, source_dir, _ = published_demo_weights
    url = live_server.url + bundle_script_path(bundle)

    run = subprocess.run(
        ["sh", "-c", f"curl -fsSL '{url}' | sh -s -- '{tmp_path / 'models'}'"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )

    assert run.returncode == 0, run.stderr
    assert f"Done: LLaMA demo (tiny) is in {tmp_path / 'models'}/llama-demo-tiny" in run.stdout
    target = tmp_path / "models" / "llama-demo-tiny"
    shard = bundle.links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    assert (target / "consolidated.00.pth").read_bytes() == served_bytes(shard)
    assert (target / "params.json").read_bytes() == (source_dir / "params.json").read_bytes()
