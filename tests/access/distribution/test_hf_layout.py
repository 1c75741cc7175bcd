"""The transformers layout (issue 18): ``publish_weights --formats meta,hf`` publishes the variant
converted to transformers' layout as a second file set under hf/, which the hub endpoint serves at
the top of the repo (Meta's files under original/, as on Meta's Hub repos) and download.sh fetches
with --format hf. With the real huggingface_hub client against a live portal: snapshot_download,
then LlamaForCausalLM.from_pretrained gives the engine's logits and greedy tokens; with
fingerprints on, the safetensors shards are the recipient's own marked copy, and a leak of them
names the recipient."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from huggingface_hub import HfApi, snapshot_download

from access.distribution.bundles import bundle_create, bundle_current
from access.distribution.identify import fingerprint_identify
from access.distribution.models import FORMATS, WeightFile
from access.distribution.publishing import WeightsPublishError, weights_publish
from access.distribution.storage import weight_storage
from inference.llama.checkpoint import load_llama
from inference.llama.hf_convert import meta_to_hf
from inference.llama.tokenizer import Tokenizer
from portal.services import api_token_create
from tests.access.distribution.served import served_bytes

transformers = pytest.importorskip("transformers")

REPO = "llama/llama-demo-tiny"


@pytest.fixture
def hf_published(published_demo_weights):
    variant, checkpoint, _ = published_demo_weights
    weights_publish(variant=variant, source_dir=checkpoint, formats=FORMATS)
    return variant, checkpoint


@pytest.fixture
def hf_grant(hf_published, researcher, reviewer, active_grant_make):
    return active_grant_make(user=researcher, variant=hf_published[0], reviewer=reviewer)


def _token(user) -> str:
    return api_token_create(user=user, name="hub")[1]


def _published(variant, name: str) -> bytes:
    weight_file = WeightFile.objects.get(variant=variant, name=name)
    return weight_storage().read_range(weight_file.storage_key, 0, weight_file.size)


def _engine_greedy(checkpoint: Path, ids: list[int], steps: int) -> tuple[torch.Tensor, list[int]]:
    engine = load_llama(checkpoint, dtype=torch.float32, device="cpu")
    sequence = list(ids)
    first = None
    with torch.no_grad():
        for _ in range(steps):
            engine.max_batch_size = 0
            engine.setup_caches(1, len(sequence))
            logits = engine(torch.tensor([sequence]), torch.arange(len(sequence)).unsqueeze(0))
            first = logits if first is None else first
            sequence.append(int(logits[0, -1].argmax()))
    return first, sequence[len(ids) :]


def test_publishing_adds_a_transformers_file_set_beside_metas(hf_published):
    variant, _ = hf_published
    names = set(WeightFile.objects.filter(variant=variant).values_list("name", flat=True))
    assert {"consolidated.00.pth", "consolidated.01.pth", "params.json", "tokenizer.model"} <= names
    assert {
        "hf/config.json", "hf/generation_config.json", "hf/model.safetensors.index.json", "hf/tokenizer.model",
        "hf/tokenizer_config.json", "hf/special_tokens_map.json", "hf/model-00001-of-00001.safetensors",
    } <= names  # fmt: skip
    shard = WeightFile.objects.get(variant=variant, name="hf/model-00001-of-00001.safetensors")
    assert shard.layout["kind"] == "safetensors"  # so recipients' copies carry fingerprints
    assert hashlib.sha256(_published(variant, shard.name)).hexdigest() == shard.sha256
    # Meta's checklist.chk lists the files of Meta's folder, as Meta shipped it.
    checklist = _published(variant, "checklist.chk").decode()
    assert "consolidated.00.pth" in checklist and "hf/" not in checklist


def test_publishing_meta_again_keeps_the_transformers_files_and_bad_formats_are_refused(hf_published):
    variant, checkpoint = hf_published
    weights_publish(variant=variant, source_dir=checkpoint)
    assert WeightFile.objects.filter(variant=variant, name__startswith="hf/").count() == 7
    # New Meta shards without their conversion would leave the transformers files another model's.
    changed = checkpoint.parent / "changed"
    shutil.copytree(checkpoint, changed)
    tensors = torch.load(changed / "consolidated.00.pth", weights_only=True)
    tensors["layers.0.attention.wq.weight"][0, 0] += 1
    torch.save(tensors, changed / "consolidated.00.pth")
    with pytest.raises(WeightsPublishError, match="publish with --formats meta,hf"):
        weights_publish(variant=variant, source_dir=changed)
    assert WeightFile.objects.get(variant=variant, name="consolidated.00.pth").sha256 == hashlib.sha256(
        (checkpoint / "consolidated.00.pth").read_bytes()
    ).hexdigest()
    with pytest.raises(WeightsPublishError, match="unknown format gguf"):
        weights_publish(variant=variant, source_dir=checkpoint, formats="meta,gguf")
    with pytest.raises(WeightsPublishError, match="must include meta"):
        weights_publish(variant=variant, source_dir=checkpoint, formats="hf")


def test_the_publish_command_converts_with_progress(published_demo_weights, capsys):
    variant, checkpoint, _ = published_demo_weights
    call_command("publish_weights", variant=variant.slug, source=str(checkpoint), formats="meta,hf")
    out, err = capsys.readouterr()
    assert "hf/model-00001-of-00001.safetensors" in out and "meta and hf layouts" in out
    assert "Converted to transformers' layout: safetensors file 1" in err


def test_snapshot_download_then_from_pretrained_gives_the_engines_tokens(live_server, hf_published, hf_grant,
                                                                         researcher, tmp_path):  # fmt: skip
    variant, checkpoint = hf_published
    variant.fingerprint = False  # bytes as published, so logits can be compared to the engine's exactly
    variant.save(update_fields=["fingerprint"])
    hub, token = live_server.url + "/hub", _token(researcher)

    info = HfApi(endpoint=hub, token=token).model_info(REPO)
    siblings = {s.rfilename for s in info.siblings}
    assert {"config.json", "model-00001-of-00001.safetensors", "original/consolidated.00.pth"} <= siblings
    folder = Path(snapshot_download(REPO, endpoint=hub, token=token, cache_dir=tmp_path / "cache",
                                    ignore_patterns=["original/*"]))  # fmt: skip
    assert not (folder / "original").exists()
    for path in folder.iterdir():
        assert path.read_bytes() == _published(variant, "hf/" + path.name), path.name

    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    text = "Weights released case by case"
    ids = Tokenizer(checkpoint / "tokenizer.model").encode(text, bos=True)
    assert tokenizer(text)["input_ids"] == ids
    expected_logits, expected_tokens = _engine_greedy(checkpoint, ids, 10)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert torch.allclose(logits, expected_logits, atol=1e-4)
    generated = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)[0, len(ids) :].tolist()
    assert generated == expected_tokens


def test_the_transformers_shards_carry_the_recipients_fingerprint(
    live_server, hf_published, hf_grant, researcher, outsider, reviewer, active_grant_make, tmp_path
):
    variant, _ = hf_published
    other = active_grant_make(user=outsider, variant=variant, reviewer=reviewer)
    bundle_create(grant=other, user=outsider)  # another recipient, with copies of their own
    hub, token = live_server.url + "/hub", _token(researcher)
    folder = Path(snapshot_download(REPO, endpoint=hub, token=token, cache_dir=tmp_path / "cache"))

    links = {link.file.name: link for link in bundle_current(hf_grant).links.select_related("file", "copy")}
    shard = links["hf/model-00001-of-00001.safetensors"]
    assert shard.copy_id is not None
    got = (folder / "model-00001-of-00001.safetensors").read_bytes()
    assert got == served_bytes(shard) and got != _published(variant, shard.file.name)
    assert hashlib.sha256(got).hexdigest() == shard.copy.sha256
    assert (folder / "original" / "consolidated.00.pth").read_bytes() == served_bytes(links["consolidated.00.pth"])
    # Both layouts carry the same marks: the transformers copy is exactly the researcher's Meta copy
    # converted, so diffing the two shows nothing.
    meta_to_hf(folder / "original", tmp_path / "converted")
    assert (tmp_path / "converted" / "model-00001-of-00001.safetensors").read_bytes() == got

    # The leaked transformers copy, as a folder of its own (not named by its hash: cast to bfloat16).
    leak = tmp_path / "leak"
    leak.mkdir()
    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    model.save_pretrained(leak)
    result = fingerprint_identify(variant=variant, suspect=leak)
    print("hf leak (bfloat16):", result.candidates)
    assert result.accused == [hf_grant.pk], result.candidates
    assert result.candidates[0]["z"] >= 10 and result.candidates[1]["z"] < 5

    # And the Meta shards still name their recipient.
    meta_leak = fingerprint_identify(variant=variant, suspect=folder / "original" / "consolidated.01.pth")
    assert meta_leak.accused == [hf_grant.pk]


def test_download_script_fetches_the_chosen_format(live_server, hf_published, hf_grant, researcher, tmp_path):
    bundle = bundle_create(grant=hf_grant, user=researcher)
    from access.distribution.tokens import bundle_script_path

    script = tmp_path / "download.sh"
    subprocess.run(["curl", "-fsS", "-o", script, live_server.url + bundle_script_path(bundle)], check=True)
    run = subprocess.run(["sh", script, "--format", "hf", tmp_path / "out"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    model_dir = tmp_path / "out" / "llama-demo-tiny"
    assert sorted(p.name for p in (model_dir / "hf").iterdir()) == sorted(
        name.removeprefix("hf/") for name in bundle.links.values_list("file__name", flat=True) if name.startswith("hf/")
    )
    assert not (model_dir / "consolidated.00.pth").exists()
    json.loads((model_dir / "hf" / "config.json").read_text())

    run = subprocess.run(["sh", script, "--format", "gguf", tmp_path / "out"], capture_output=True, text=True)
    assert run.returncode == 1 and "meta|hf|both" in run.stderr
    run = subprocess.run(["sh", script, tmp_path / "out"], capture_output=True, text=True)  # meta, the default
    assert run.returncode == 0, run.stderr
    assert (model_dir / "consolidated.00.pth").is_file() and "consolidated.00.pth: OK" in run.stdout
    assert "hf/" not in run.stdout  # the transformers files were neither fetched nor checked again


def test_the_transformers_files_download_from_s3_storage(live_server, s3_storage, published_demo_weights, researcher,
                                                         reviewer, active_grant_make, tmp_path):  # fmt: skip
    from access.distribution.models import DownloadEvent

    variant, checkpoint, _ = published_demo_weights
    weights_publish(variant=variant, source_dir=checkpoint, formats=FORMATS)
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    folder = Path(snapshot_download(REPO, endpoint=live_server.url + "/hub", token=_token(researcher),
                                    cache_dir=tmp_path / "cache"))  # fmt: skip

    links = {link.file.name: link for link in bundle_current(grant).links.select_related("file", "copy")}
    for name, link in links.items():
        on_disk = folder / (name.removeprefix("hf/") if name.startswith("hf/") else f"original/{name}")
        assert on_disk.read_bytes() == served_bytes(link), name
    outcomes = dict(DownloadEvent.objects.filter(grant=grant, counted=True).values_list("file__name", "outcome"))
    # Files as published go by redirect to the bucket; the fingerprinted shards from the portal.
    assert outcomes["hf/config.json"] == "redirected"
    assert outcomes["hf/model-00001-of-00001.safetensors"] == "served"
