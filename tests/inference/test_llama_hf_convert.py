"""A Meta-format checkpoint converted to transformers' layout (inference/llama/hf_convert.py): a
two-shard tiny checkpoint, written as several safetensors files with their index, loads with
LlamaForCausalLM.from_pretrained and AutoTokenizer, and gives the engine's logits and greedy
tokens."""

from __future__ import annotations

import json

import pytest
import torch

from inference.llama.checkpoint import load_llama, tiny_llama_make
from inference.llama.hf_convert import INDEX, meta_to_hf
from inference.llama.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    meta = tiny_llama_make(tmp_path_factory.mktemp("meta") / "ckpt", n_shards=2, seed=4)
    out = tmp_path_factory.mktemp("hf") / "llama-demo-tiny-hf"
    # Small output files, so the model is split over several, as a 65B conversion is.
    written = meta_to_hf(meta, out, max_shard_bytes=64 << 10)
    return meta, out, written


def test_the_files_are_transformers_layout_with_an_index_of_every_tensor(converted):
    _, out, written = converted
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((out / INDEX).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert "model.layers.1.self_attn.q_proj.weight" in index["weight_map"] and "lm_head.weight" in index["weight_map"]
    assert {p.name for p in written} >= {"config.json", "tokenizer.model", "tokenizer_config.json", INDEX}
    assert not list(out.glob(".part-*"))


def test_from_pretrained_gives_the_engines_logits_and_greedy_tokens(converted):
    meta, out, _ = converted
    engine = load_llama(meta, dtype=torch.float32, device="cpu")
    hf = transformers.LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ours = Tokenizer(meta / "tokenizer.model")
    text = "The weights are released case by case"
    ids = ours.encode(text, bos=True)
    assert tokenizer(text)["input_ids"] == ids

    tokens = torch.tensor([ids])
    engine.setup_caches(1, 64)
    with torch.no_grad():
        expected = engine(tokens, torch.arange(len(ids)).unsqueeze(0))
        got = hf(tokens).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()

    generated = hf.generate(tokens, max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
    sequence = list(ids)
    with torch.no_grad():
        for _ in range(12):
            engine.max_batch_size = 0
            engine.setup_caches(1, len(sequence))
            logits = engine(torch.tensor([sequence]), torch.arange(len(sequence)).unsqueeze(0))
            sequence.append(int(logits[0, -1].argmax()))
    assert generated == sequence[len(ids) :]
