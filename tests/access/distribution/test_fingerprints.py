"""Every copy names its recipient (issue 17), end to end on a tiny LLaMA trained here for a few
hundred steps: a hundred and two grants; two researchers download their copies through the
gateway; the copies differ, load with torch.load(weights_only=True), pass zipfile.testzip() and
their own checklist.chk under md5sum -c; the model is unchanged to any user (perplexity within
0.1%, greedy output the same on at least 9 of 10 prompts); and fingerprint_identify names the
right grant, z >= 10 and every other grant below 5, for the exact copy, a bfloat16 cast, per-channel
int8 quantization (in transformers' layout), and the average of two copies (both accused)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import zipfile

import pytest
import torch
from django.core.management import call_command
from django.test import Client

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.distribution.bundles import bundle_create
from access.distribution.publishing import weights_publish
from access.distribution.tokens import link_path
from inference.llama.checkpoint import load_llama, shard_paths, shards_merge, tiny_llama_make
from inference.llama.hf_reference import meta_to_hf_qk
from inference.llama.model import Transformer
from tests.factories import UserFactory

VOCAB, SEQ, HEADS = 512, 64, 4
GRANTS = 102
STEPS = 300


def _markov_chain(seed: int) -> torch.Tensor:
    """Each token's successors: four, the first with probability 0.7, so a model can learn it."""
    generator = torch.Generator().manual_seed(seed)
    successors = torch.randint(3, VOCAB, (VOCAB, 4), generator=generator)
    return successors


def _sample(successors: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.empty(count, SEQ, dtype=torch.long)
    rows[:, 0] = torch.randint(3, VOCAB, (count,), generator=generator)
    weights = torch.tensor([0.7, 0.1, 0.1, 0.1])
    for t in range(1, SEQ):
        pick = torch.multinomial(weights, count, replacement=True, generator=generator)
        rows[:, t] = successors[rows[:, t - 1], pick]
    return rows


def _fresh_caches(model: Transformer, batch: int, length: int) -> None:
    model.max_batch_size = 0  # a new cache each call: nothing carries over between steps
    model.setup_caches(batch, length)


def _logits(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    _fresh_caches(model, tokens.shape[0], tokens.shape[1])
    positions = torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1)
    return model(tokens, positions)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A two-shard float16 checkpoint in Meta's layout of a model trained on a Markov chain."""
    folder = tiny_llama_make(
        tmp_path_factory.mktemp("trained") / "llama-demo-tiny", dim=128, n_layers=4, n_heads=HEADS,
        vocab_size=VOCAB, n_shards=2, seed=5,
    )  # fmt: skip
    model = load_llama(folder, dtype=torch.float32, device="cpu").requires_grad_(True).train()
    successors = _markov_chain(0)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(STEPS):
        batch = _sample(successors, 32, seed=1000 + step)
        logits = _logits(model, batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 2.0, loss.item()  # it learned the chain (uniform would be 6.2)
    state = {name: tensor.detach().half() for name, tensor in model.state_dict().items()}
    originals = [torch.load(path, weights_only=True) for path in shard_paths(folder)]
    from inference.llama.checkpoint import shards_split

    for path, original, shard in zip(shard_paths(folder), originals, shards_split(state, 2), strict=True):
        shard["rope.freqs"] = original["rope.freqs"]
        torch.save(shard, path)
    return folder, successors


def _perplexity(folder, sequences: torch.Tensor) -> float:
    model = load_llama(folder, dtype=torch.float32, device="cpu")
    with torch.no_grad():
        logits = _logits(model, sequences[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), sequences[:, 1:].reshape(-1))
    return math.exp(loss.item())


def _greedy(folder, prompts: torch.Tensor, new_tokens: int = 16) -> list[list[int]]:
    model = load_llama(folder, dtype=torch.float32, device="cpu")
    tokens = prompts
    with torch.no_grad():
        for _ in range(new_tokens):
            tokens = torch.cat([tokens, _logits(model, tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[:, prompts.shape[1] :].tolist()


@pytest.fixture
def world(db, llama_catalog, local_storage, trained_checkpoint, reviewer, active_grant_make, tmp_path):
    """The trained model published; 102 grants of it; two researchers' copies downloaded through
    the gateway into folders, as download.sh would leave them."""
    folder, successors = trained_checkpoint
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    assert variant.fingerprint  # on by default
    weights_publish(variant=variant, source_dir=folder)
    users = [UserFactory(email=f"researcher{i}@uni{i}.example.edu") for i in range(GRANTS)]
    grants = [active_grant_make(user=user, variant=variant, reviewer=reviewer) for user in users]
    copies = {}
    for index in (7, 42):
        grant = grants[index]
        bundle = bundle_create(grant=grant, user=grant.user)
        target = tmp_path / f"copy-{grant.pk}"
        target.mkdir()
        for link in bundle.links.select_related("file"):
            response = Client().get(link_path(link))
            assert response.status_code == 200
            (target / link.file.name).write_bytes(b"".join(response.streaming_content) if response.streaming else
                                                  response.content)  # fmt: skip
        copies[grant.pk] = target
    return variant, folder, successors, grants, copies


def _identify(variant, suspect) -> dict:
    out = io.StringIO()
    call_command("fingerprint_identify", "--variant", variant.slug, "--suspect", str(suspect), "--json", stdout=out)
    return json.loads(out.getvalue())


def _assert_names(result: dict, leakers: set[int]) -> None:
    z = {entry["grant"]: entry["z"] for entry in result["candidates"]}
    assert len(z) == GRANTS
    assert set(result["accused"]) == leakers, result["candidates"][:4]
    assert all(z[grant] >= 10 for grant in leakers), result["candidates"][:4]
    assert max(value for grant, value in z.items() if grant not in leakers) < 5
    assert [entry["z"] for entry in result["candidates"]] == sorted(z.values(), reverse=True)
    assert result["threshold"] == 10 and result["false_positive_bound"] < 1e-18


def _state(folder) -> dict[str, torch.Tensor]:
    return shards_merge([torch.load(path, weights_only=True) for path in shard_paths(folder)])


def test_two_copies_differ_load_verify_and_behave_as_the_original(world):
    variant, original, successors, grants, copies = world
    first, second = copies.values()
    for folder in (first, second):
        for shard in shard_paths(folder):
            data = shard.read_bytes()
            assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
            torch.load(io.BytesIO(data), weights_only=True)
            assert data != (original / shard.name).read_bytes()
            assert len(data) == (original / shard.name).stat().st_size
        check = subprocess.run(["md5sum", "-c", "checklist.chk"], cwd=folder, capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout.count(": OK") == 4, check.stdout
    assert (first / "consolidated.00.pth").read_bytes() != (second / "consolidated.00.pth").read_bytes()
    assert (first / "params.json").read_bytes() == (original / "params.json").read_bytes()

    held_out = _sample(successors, 32, seed=99)
    reference = _perplexity(original, held_out)
    assert reference < 4  # the trained model predicts the chain
    for folder in (first, second):
        assert abs(_perplexity(folder, held_out) / reference - 1) < 1e-3
    prompts = _sample(successors, 10, seed=123)[:, :8]
    expected = _greedy(original, prompts)
    for folder in (first, second):
        assert sum(a == b for a, b in zip(_greedy(folder, prompts), expected, strict=True)) >= 9


def test_the_exact_copy_names_its_grant_by_marks_and_by_hash(world):
    variant, _, _, grants, copies = world
    grant_id, folder = next(iter(copies.items()))
    result = _identify(variant, folder)
    _assert_names(result, {grant_id})
    assert {entry["grant"] for entry in result["exact_copy_of"]} == {grant_id}
    assert result["candidates"][0]["user"] == grants[7].user.email
    event = AuditEvent.objects.filter(action="fingerprint.identified").latest("id")
    assert event.details["accused"] == [grant_id]


def test_a_bfloat16_cast_names_its_grant(world, tmp_path):
    variant, _, _, _, copies = world
    grant_id, folder = list(copies.items())[1]
    for shard in shard_paths(folder):
        state = torch.load(shard, weights_only=True)
        torch.save({name: tensor.to(torch.bfloat16) for name, tensor in state.items()}, tmp_path / shard.name)
    _assert_names(_identify(variant, tmp_path), {grant_id})


def test_per_channel_int8_in_transformers_layout_names_its_grant(world, tmp_path):
    from safetensors.torch import save_file

    variant, _, _, _, copies = world
    grant_id, folder = next(iter(copies.items()))
    merged = _state(folder)
    hf = {}
    names = {"wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj", "wo": "self_attn.o_proj",
             "w1": "mlp.gate_proj", "w3": "mlp.up_proj", "w2": "mlp.down_proj"}  # fmt: skip
    for name, tensor in merged.items():
        if tensor.ndim != 2:
            continue
        rows = tensor.float()
        step = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / 127
        dequantized = (torch.round(rows / step) * step).half()  # per output channel, symmetric int8
        if name.startswith("layers."):
            _, layer, _, kind, _ = name.split(".")
            if kind in ("wq", "wk"):
                dequantized = meta_to_hf_qk(dequantized, HEADS)
            hf[f"model.layers.{layer}.{names[kind]}.weight"] = dequantized.contiguous()
        else:
            hf[{"tok_embeddings.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight"}[name]] = (
                dequantized.contiguous()
            )
    save_file(hf, tmp_path / "model.safetensors")
    _assert_names(_identify(variant, tmp_path / "model.safetensors"), {grant_id})


def test_the_average_of_two_copies_names_both(world, tmp_path):
    variant, _, _, _, copies = world
    (a, first), (b, second) = copies.items()
    for one, other in zip(shard_paths(first), shard_paths(second), strict=True):
        x, y = torch.load(one, weights_only=True), torch.load(other, weights_only=True)
        torch.save({name: ((x[name].float() + y[name].float()) / 2).half() for name in x}, tmp_path / one.name)
    _assert_names(_identify(variant, tmp_path), {a, b})


def test_an_unmarked_copy_accuses_nobody(world):
    variant, original, _, _, _ = world
    result = _identify(variant, original)
    assert result["accused"] == [] and result["exact_copy_of"] == []
    assert max(entry["z"] for entry in result["candidates"]) < 5


def test_a_reviewer_names_the_grant_from_the_page_for_a_copy_in_the_suspects_folder(
    world, reviewer_client, settings, tmp_path
):
    variant, _, _, grants, copies = world
    grant_id, folder = next(iter(copies.items()))
    settings.FINGERPRINT_SUSPECT_DIR = str(folder.parent)
    url = "/review/fingerprints/"
    page = reviewer_client.get(url)
    assert page.status_code == 200 and "Whose copy is it?" in page.content.decode()

    response = reviewer_client.post(url, {"variant": variant.slug, "suspect": folder.name})
    text = response.content.decode()
    assert response.status_code == 200, text[-2000:]
    assert f'data-grant="{grant_id}" class="accused"' in text
    assert "byte for byte, the copy served to grant" in text and grants[7].user.email in text
    event = AuditEvent.objects.filter(action="fingerprint.identified").latest("id")
    assert event.actor_id is not None and event.details["accused"] == [grant_id]

    # Paths outside the suspects' folder are never read, whatever they are spelled as.
    for outside in ("../../etc/passwd", "/etc/passwd", str(tmp_path.parent)):
        refused = reviewer_client.post(url, {"variant": variant.slug, "suspect": outside})
        assert refused.status_code == 400 and "must be inside" in refused.content.decode()
    missing = reviewer_client.post(url, {"variant": variant.slug, "suspect": "nothing-here"})
    assert missing.status_code == 400 and "There is no" in missing.content.decode()


def test_researchers_cannot_open_the_identification_page(world, client):
    _, _, _, grants, _ = world
    client.force_login(grants[0].user)
    response = client.get("/review/fingerprints/")
    assert response.status_code in (302, 403)


def test_after_the_master_key_is_rotated_old_and_new_copies_both_name_their_grants(world, settings, tmp_path):
    variant, _, _, grants, copies = world
    old_grant, old_folder = next(iter(copies.items()))
    settings.FINGERPRINT_KEYS = {"2027-01": b"n" * 32, **settings.FINGERPRINT_KEYS}  # the new key first
    grant = grants[90]
    bundle = bundle_create(grant=grant, user=grant.user)
    shard = bundle.links.select_related("copy").get(file__name="consolidated.00.pth")
    assert shard.copy.key_id == "2027-01"
    new_folder = tmp_path / "new"
    new_folder.mkdir()
    for link in bundle.links.select_related("file").filter(file__name__startswith="consolidated."):
        (new_folder / link.file.name).write_bytes(b"".join(Client().get(link_path(link)).streaming_content))

    _assert_names(_identify(variant, new_folder), {grant.pk})
    _assert_names(_identify(variant, old_folder), {old_grant})
    # With the old key dropped from FINGERPRINT_KEYS its copies cannot be scored, and the result says so.
    old_key = next(k for k in settings.FINGERPRINT_KEYS if k != "2027-01")
    settings.FINGERPRINT_KEYS = {"2027-01": b"n" * 32}
    result = _identify(variant, old_folder)
    assert result["accused"] == [] and result["keys_missing"] == [old_key]
    assert {entry["grant"] for entry in result["exact_copy_of"]} == {old_grant}  # its hash still names it
