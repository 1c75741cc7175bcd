"""Meta's own download.sh of February 2023 (the llama_v1 branch) against a live portal: the bundle's
wildcard URL (one "*", no "?") serves exactly the granted files under the paths the script puts in
its place, each checked, counted and logged like any link, fingerprinted copies included, and both
of the script's md5sum checks pass.

META_DOWNLOAD_SH is written from the script's published behaviour: the three settings a researcher
edits at its top, its shard counts per size, wget with the URL's "*" replaced by each path (bash's
${VAR/'*'/path}, unquoted as in the original), and md5sum -c in the target folder and in each size's
folder."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from access.distribution.models import DownloadEvent, DownloadLink
from access.distribution.tokens import bundle_wildcard_path
from access.grants.services import grant_revoke
from tests.access.distribution.served import served_bytes

META_DOWNLOAD_SH = """\
PRESIGNED_URL="{url}"             # replace with presigned url from email
MODEL_SIZE="{sizes}"  # edit this list with the model sizes you wish to download
TARGET_FOLDER="{target}"             # where all files should end up

declare -A N_SHARD_DICT

N_SHARD_DICT["7B"]="0"
N_SHARD_DICT["13B"]="1"
N_SHARD_DICT["30B"]="3"
N_SHARD_DICT["65B"]="7"

echo "Downloading tokenizer"
wget ${{PRESIGNED_URL/'*'/"tokenizer.model"}} -O ${{TARGET_FOLDER}}"/tokenizer.model"
wget ${{PRESIGNED_URL/'*'/"tokenizer_checklist.chk"}} -O ${{TARGET_FOLDER}}"/tokenizer_checklist.chk"

(cd ${{TARGET_FOLDER}} && md5sum -c tokenizer_checklist.chk)

for i in ${{MODEL_SIZE//,/ }}
do
    echo "Downloading ${{i}}"
    mkdir -p ${{TARGET_FOLDER}}"/${{i}}"
    for s in $(seq -f "0%g" 0 ${{N_SHARD_DICT[$i]}})
    do
        wget ${{PRESIGNED_URL/'*'/"${{i}}/consolidated.${{s}}.pth"}} -O ${{TARGET_FOLDER}}"/${{i}}/consolidated.${{s}}.pth"
    done
    wget ${{PRESIGNED_URL/'*'/"${{i}}/params.json"}} -O ${{TARGET_FOLDER}}"/${{i}}/params.json"
    wget ${{PRESIGNED_URL/'*'/"${{i}}/checklist.chk"}} -O ${{TARGET_FOLDER}}"/${{i}}/checklist.chk"
    echo "Checking checksums"
    (cd ${{TARGET_FOLDER}}"/${{i}}" && md5sum -c checklist.chk)
done
"""


@pytest.fixture
def meta_bundle(published_demo_weights, researcher, reviewer, bundle_make):
    """The demo's links, with the demo filed as Meta's two-shard size, 13B, so the script runs as
    Meta shipped it."""
    variant = published_demo_weights[0]
    variant.meta_folder = "13B"
    variant.save(update_fields=["meta_folder"])
    return bundle_make(user=researcher, variant=variant, reviewer=reviewer)


def _run_meta_script(live_server, bundle, tmp_path, sizes: str = "13B"):
    for tool in ("bash", "wget", "md5sum"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to run Meta's download.sh")
    target = tmp_path / "llama"
    target.mkdir()
    script = tmp_path / "download.sh"
    script.write_text(META_DOWNLOAD_SH.format(url=live_server.url + bundle_wildcard_path(bundle), sizes=sizes,
                                              target=target))  # fmt: skip
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return run, target


def test_the_wildcard_url_has_one_star_and_nothing_a_shell_would_split_or_glob(meta_bundle):
    path = bundle_wildcard_path(meta_bundle)
    assert path.startswith("/dl/w/") and path.endswith("/*") and path.count("*") == 1 and "?" not in path
    assert re.fullmatch(r"/dl/w/[A-Za-z0-9._-]+/\*", path)


def test_metas_download_sh_fetches_and_verifies_the_granted_files_unchanged(live_server, meta_bundle, tmp_path):
    run, target = _run_meta_script(live_server, meta_bundle, tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "tokenizer.model: OK" in run.stdout
    for name in ("consolidated.00.pth", "consolidated.01.pth", "params.json"):
        assert f"{name}: OK" in run.stdout
    assert "FAILED" not in run.stdout + run.stderr
    links = {link.file.name: link for link in meta_bundle.links.select_related("file", "copy")}
    assert (target / "tokenizer.model").read_bytes() == served_bytes(links["tokenizer.model"])
    folder_files = ("consolidated.00.pth", "consolidated.01.pth", "params.json")
    for name in folder_files:
        assert (target / "13B" / name).read_bytes() == served_bytes(links[name]), name
    assert links["consolidated.00.pth"].copy_id is not None  # the researcher's own, fingerprinted copy
    # As Meta's: the size's checklist lists the files of its folder, the tokenizer's its own.
    checklist = (target / "13B" / "checklist.chk").read_text().splitlines()
    assert [line.split("  ")[1] for line in checklist] == list(folder_files)
    assert (target / "tokenizer_checklist.chk").read_text().endswith("  tokenizer.model\n")
    # Counted and logged against the grant, link by link, as /dl/ downloads are.
    for link in DownloadLink.objects.filter(bundle=meta_bundle).select_related("file"):
        assert link.downloads_used == (0 if link.file.name == "checklist.chk" else 1), link.file.name
    served = DownloadEvent.objects.filter(grant=meta_bundle.grant, counted=True)
    assert sorted(served.values_list("file__name", flat=True)) == sorted([*folder_files, "tokenizer.model"])


def test_paths_outside_the_granted_files_are_refused_and_revocation_stops_the_script(
    live_server, meta_bundle, tmp_path, client, reviewer
):
    base = bundle_wildcard_path(meta_bundle).removesuffix("*")
    for wrong in ("7B/consolidated.00.pth", "13B/tokenizer.model", "13B/../params.json", "params.json",
                  "13B/consolidated.02.pth", "13B/"):  # fmt: skip
        refused = client.get(base + wrong)
        assert refused.status_code == 404, wrong
        assert 'MODEL_SIZE="13B"' in refused.content.decode()
    assert client.get("/dl/w/not-a-token/tokenizer.model").status_code == 404

    grant_revoke(grant=meta_bundle.grant, actor=reviewer, reason="Shared the weights.")
    run, target = _run_meta_script(live_server, meta_bundle, tmp_path)
    assert run.returncode != 0
    assert not (target / "13B" / "consolidated.00.pth").stat().st_size
    assert not DownloadLink.objects.filter(bundle=meta_bundle, downloads_used__gt=0).exists()
