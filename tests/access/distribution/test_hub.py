"""The Hub-compatible endpoint with the real huggingface_hub client against a live portal (local
storage): snapshot_download of a granted variant (the researcher's own files, fingerprinted shards
included, counted against their links), GatedRepoError without a grant or token,
RepositoryNotFoundError for an unknown repo, RevisionNotFoundError and EntryNotFoundError, and
refusal after revocation."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from access.distribution.bundles import bundle_current
from access.distribution.models import DownloadEvent
from access.grants.services import grant_revoke
from portal.services import api_token_create
from tests.access.distribution.served import served_bytes

REPO = "llama/llama-demo-tiny"


@pytest.fixture
def hub(live_server):
    return live_server.url + "/hub"


@pytest.fixture
def cache(tmp_path):
    """The client's cache for this test alone: a snapshot cached by another would be answered
    from disk (the client does so when the Hub refuses a repo it has files of)."""
    return {"cache_dir": tmp_path / "hf-cache"}


def _token(user) -> str:
    return api_token_create(user=user, name="hub")[1]


def test_snapshot_download_fetches_the_granted_variant_counted_against_the_grant(
    hub, cache, grant, researcher, tmp_path
):
    folder = snapshot_download(REPO, endpoint=hub, token=_token(researcher), **cache)

    bundle = bundle_current(grant)  # made by the hub's first download
    links = {link.file.name: link for link in bundle.links.select_related("file", "copy")}
    names = sorted(p.name for p in Path(folder).iterdir() if p.is_file())
    assert names == sorted(links)
    for name, link in links.items():
        assert (Path(folder) / name).read_bytes() == served_bytes(link), name
    assert links["consolidated.00.pth"].copy_id is not None  # the researcher's own fingerprinted copy
    served = DownloadEvent.objects.filter(grant=grant, counted=True)
    assert sorted(served.values_list("file__name", flat=True)) == sorted(links)

    info = HfApi(endpoint=hub, token=_token(researcher)).model_info(REPO)
    assert len(info.sha) == 40 and {s.rfilename for s in info.siblings} == set(links)

    # A second download of one file, from the client's cache: not fetched again.
    path = hf_hub_download(REPO, "params.json", endpoint=hub, token=_token(researcher), **cache)
    assert Path(path).read_bytes() == served_bytes(links["params.json"])


def test_the_client_raises_its_own_errors_with_the_portals_message(
    hub, cache, grant, researcher, outsider, reviewer
):
    with pytest.raises(GatedRepoError, match="no access"):
        snapshot_download(REPO, endpoint=hub, token=_token(outsider), **cache)
    with pytest.raises(GatedRepoError):
        hf_hub_download(REPO, "params.json", endpoint=hub, token=False, **cache)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("llama/no-such-model", endpoint=hub, token=_token(researcher), **cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "params.json", revision="0" * 40, endpoint=hub, token=_token(researcher), **cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "no-such-file.bin", endpoint=hub, token=_token(researcher), **cache)

    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")
    with pytest.raises(GatedRepoError, match="revoked"):
        hf_hub_download(REPO, "consolidated.00.pth", endpoint=hub, token=_token(researcher), **cache)
    assert not DownloadEvent.objects.filter(grant=grant, counted=True).exists()


def _fetch(url: str, method: str = "GET", **headers):
    with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=30) as response:
        return response.status, response.headers, response.read()


def test_a_download_resumes_with_a_range_and_costs_one_download(hub, grant, researcher):
    url = f"{hub}/{REPO}/resolve/main/consolidated.00.pth"
    auth = {"Authorization": f"Bearer {_token(researcher)}"}
    status, headers, _ = _fetch(url, "HEAD", **auth)
    assert status == 200 and len(headers["X-Repo-Commit"]) == 40
    size = int(headers["Content-Length"])
    status_first, _, first = _fetch(url, Range="bytes=0-9999", **auth)
    status_rest, _, rest = _fetch(url, Range="bytes=10000-", **auth)
    assert status_first == status_rest == 206
    link = bundle_current(grant).links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    assert first + rest == served_bytes(link) and len(first + rest) == size
    link.refresh_from_db()
    assert link.downloads_used == 1
    assert hashlib.sha256(first + rest).hexdigest() == link.copy.sha256


@pytest.fixture
def s3_grant(s3_storage, published_demo_weights, researcher, reviewer, active_grant_make):
    return active_grant_make(user=researcher, variant=published_demo_weights[0], reviewer=reviewer)


def test_snapshot_download_from_s3_storage_follows_the_presigned_redirects(hub, cache, s3_grant, researcher):
    folder = Path(snapshot_download(REPO, endpoint=hub, token=_token(researcher), **cache))

    links = {link.file.name: link for link in bundle_current(s3_grant).links.select_related("file", "copy")}
    for name, link in links.items():
        assert (folder / name).read_bytes() == served_bytes(link), name
    # Files as published went by redirect to the bucket; the fingerprinted shards from the portal.
    outcomes = dict(DownloadEvent.objects.filter(grant=s3_grant, counted=True).values_list("file__name", "outcome"))
    assert outcomes["params.json"] == "redirected" and outcomes["consolidated.00.pth"] == "served"
