"""The Hub-compatible endpoint with the real huggingface_hub client against a live portal (local
storage): snapshot_download of a granted variant (the researcher's own files, fingerprinted shards
included, counted against their links), GatedRepoError without a grant or token,
RepositoryNotFoundError for an unknown repo, RevisionNotFoundError and EntryNotFoundError, and
refusal after revocation."""

from __future__ import annotations

import hashlib
import time
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


class _CuttingProxy:
    """A TCP proxy on loopback to the live portal that cuts the first response to a whole-file GET
    of ``name`` after ``cut_after`` bytes, as a dropped connection would; later requests pass."""

    def __init__(self, upstream_port: int, name: bytes, cut_after: int):
        import socket
        import threading

        self.upstream_port, self.name, self.cut_after, self.cut = upstream_port, name, cut_after, False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._socket, self._threading = socket, threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = self._socket.create_connection(("127.0.0.1", self.upstream_port))
        state = {"cut_at": None, "sent": 0}

        def to_upstream():
            while data := client.recv(65536):
                lowered = data.lower()
                if not self.cut and lowered.startswith(b"get ") and self.name in data and b"\r\nrange:" not in lowered:
                    self.cut, state["cut_at"] = True, self.cut_after
                upstream.sendall(data)

        self._threading.Thread(target=lambda: _quietly(to_upstream), daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if state["cut_at"] is not None:
                    room = state["cut_at"] - state["sent"]
                    client.sendall(data[: max(room, 0)])
                    state["sent"] += len(data)
                    if state["sent"] >= state["cut_at"]:
                        break  # the connection drops mid-body
                else:
                    client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                # shutdown first: another thread is still reading from each, and the peer must see the end now
                _quietly(lambda sock=sock: sock.shutdown(self._socket.SHUT_RDWR))
                _quietly(lambda sock=sock: sock.close())

    def close(self):
        self.listener.close()


def _quietly(action):
    try:
        action()
    except OSError:
        pass


def test_the_client_resumes_a_dropped_download_with_a_range(
    live_server, grant, researcher, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    # The client keeps what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB) and resumes from
    # there; the demo's shards are smaller, so its chunks are made smaller here.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 << 10)
    port = int(live_server.url.rsplit(":", 1)[1])
    proxy = _CuttingProxy(port, b"consolidated.00.pth", cut_after=60_000)
    try:
        path = hf_hub_download(REPO, "consolidated.00.pth", endpoint=f"http://127.0.0.1:{proxy.port}/hub",
                               token=_token(researcher), cache_dir=tmp_path / "hf-cache")  # fmt: skip
    finally:
        proxy.close()

    assert proxy.cut  # the first GET was cut short, so the client had to resume
    link = bundle_current(grant).links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    assert Path(path).read_bytes() == served_bytes(link)
    time.sleep(0.5)  # the resumed stream's log is written as it ends
    ranges = [r for status, r in DownloadEvent.objects.filter(link=link).values_list("status_code", "range_header")
              if status == 206]  # fmt: skip
    # The client asked only for the rest, from the bytes it had kept.
    assert len(ranges) == 1 and ranges[0].startswith("bytes=") and ranges[0].endswith("-")
    assert 0 < int(ranges[0][len("bytes=") : -1]) <= 60_000


def test_each_recipient_has_a_revision_of_their_own_so_a_shared_cache_never_mixes_copies(
    hub, grant, researcher, outsider, reviewer, active_grant_make, tmp_path
):
    other = active_grant_make(user=outsider, variant=grant.variant, reviewer=reviewer)
    shared_cache = tmp_path / "one-cache-for-both"
    mine = Path(hf_hub_download(REPO, "consolidated.00.pth", endpoint=hub, token=_token(researcher),
                                cache_dir=shared_cache))  # fmt: skip
    theirs = Path(hf_hub_download(REPO, "consolidated.00.pth", endpoint=hub, token=_token(outsider),
                                  cache_dir=shared_cache))  # fmt: skip

    assert mine.read_bytes() != theirs.read_bytes()  # each got their own marked copy
    link = bundle_current(other).links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    assert theirs.read_bytes() == served_bytes(link)
    assert DownloadEvent.objects.filter(grant=other, counted=True, file__name="consolidated.00.pth").exists()
