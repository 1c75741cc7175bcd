"""download.sh, as a researcher runs it: `sh download.sh` against a live portal."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import urllib.request

import pytest
import time_machine

from access.distribution.tokens import bundle_script_path, link_path
from tests.access.distribution.served import served_bytes, served_sha256

pytestmark = pytest.mark.django_db(transaction=True)


def _script(live_server, bundle, tmp_path):
    with urllib.request.urlopen(live_server.url + bundle_script_path(bundle), timeout=10) as response:
        assert response.headers["Content-Disposition"] == 'attachment; filename="download.sh"'
        script = tmp_path / "download.sh"
        script.write_bytes(response.read())
    return script


def _run(script, tmp_path):
    return subprocess.run(
        ["sh", str(script), str(tmp_path / "weights")], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def test_download_script_fetches_and_verifies_the_demo_checkpoint(
    live_server, bundle, published_demo_weights, tmp_path
):
    _, source_dir, weight_files = published_demo_weights
    script = _script(live_server, bundle, tmp_path)
    target = tmp_path / "weights" / "llama-demo-tiny"
    links = {link.file.name: link for link in bundle.links.select_related("file", "copy")}
    # An earlier run stopped in the middle of a shard: the script continues it.
    target.mkdir(parents=True)
    (target / "consolidated.00.pth").write_bytes(served_bytes(links["consolidated.00.pth"])[:50_000])

    run = _run(script, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "checklist.chk" in run.stdout and "Checking md5 sums" in run.stdout
    assert "consolidated.00.pth: OK" in run.stdout
    for weight_file in weight_files:
        data = (target / weight_file.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == served_sha256(links[weight_file.name])
    for name in ("params.json", "tokenizer.model"):
        assert (target / name).read_bytes() == (source_dir / name).read_bytes()
    for name in ("consolidated.00.pth", "consolidated.01.pth"):  # the researcher's own, fingerprinted
        assert (target / name).read_bytes() != (source_dir / name).read_bytes()
    # md5sum itself agrees: the checklist lists the researcher's own bytes.
    check = subprocess.run(["md5sum", "-c", "checklist.chk"], cwd=target, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == len(weight_files) - 1, check.stdout

    again = _run(script, tmp_path)  # nothing left to fetch; the checks still run
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already downloaded") == len(weight_files)


def test_download_script_fails_clearly_once_the_links_expired(live_server, bundle, tmp_path):
    script = _script(live_server, bundle, tmp_path)
    with time_machine.travel(bundle.expires_at + dt.timedelta(minutes=1)):
        run = _run(script, tmp_path)
    assert run.returncode != 0
    assert "expired" in run.stderr
    assert f"{live_server.url}/grants/" in run.stderr
    assert not any((tmp_path / "weights" / "llama-demo-tiny").iterdir())


@pytest.mark.parametrize(
    "resume",
    [
        ["curl", "--fail", "--silent", "--show-error", "-C", "-", "-o"],
        ["wget", "--quiet", "--continue", "-O"],
    ],
    ids=["curl -C -", "wget --continue"],
)
def test_real_clients_resume_a_partial_file_within_one_download(
    live_server, bundle, published_demo_weights, tmp_path, resume
):
    link = bundle.links.select_related("file", "copy").get(file__name="consolidated.00.pth")
    link.max_downloads = 1
    link.save(update_fields=["max_downloads"])
    whole = served_bytes(link)  # the researcher's own copy
    target = tmp_path / link.file.name
    target.write_bytes(whole[:50_000])  # an earlier run stopped here

    done = subprocess.run([*resume, str(target), live_server.url + link_path(link)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == whole
    link.refresh_from_db()
    assert (link.downloads_used, link.bytes_reserved) == (1, len(whole) - 50_000)

    # The link had one download: a whole copy more is refused, and so is any range past the slack.
    again = subprocess.run(["curl", "--silent", "-o", "/dev/null", "-w", "%{http_code}",
                            live_server.url + link_path(link)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.stdout == "403"
    for start in (0, 1, 1000):
        ranged = subprocess.run(["curl", "--silent", "-r", f"{start}-", "-o", "/dev/null", "-w", "%{http_code}",
                                 live_server.url + link_path(link)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert ranged.stdout == "403", start
