"""Our LLaMA against transformers' LlamaForCausalLM on the same weights (float32)."""

import pytest
import torch

from inference.llama.checkpoint import load_llama
from inference.llama.generate import SamplingParams, generate
from inference.llama.hf_reference import to_hf
from inference.llama.model import Transformer
from inference.llama.tokenizer import Tokenizer

TOL = 1e-4
PROMPT = "The river ran slow and brown past the mill"


@pytest.fixture(scope="module")
def engine(tiny_ckpt):
    return load_llama(tiny_ckpt, dtype=torch.float32, device="cpu", max_seq_len=128), Tokenizer(
        tiny_ckpt / "tokenizer.model"
    )


def full_logits(model: Transformer, ids: list[int]) -> torch.Tensor:
    model.setup_caches(1, len(ids))
    return model(torch.tensor([ids]), torch.arange(len(ids)).unsqueeze(0))[0]


def test_full_forward_logits_match_transformers(engine):
    model, tok = engine
    ids = tok.encode(PROMPT)
    with torch.no_grad():
        expected = to_hf(model)(torch.tensor([ids])).logits[0]
    ours = full_logits(model, ids)
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() < TOL


def test_comparison_fails_without_the_rotary_permutation(engine):
    model, tok = engine
    ids = tok.encode(PROMPT)
    with torch.no_grad():
        unpermuted = to_hf(model, permute=False)(torch.tensor([ids])).logits[0]
    # Position 0 has no rotation, so the mismatch shows from the second token on.
    assert (full_logits(model, ids) - unpermuted).abs().max().item() > 1e-2


def test_incremental_decoding_logits_match_transformers(engine):
    model, tok = engine
    ids = tok.encode(PROMPT)
    split = 4
    reference = to_hf(model)
    model.setup_caches(1, len(ids))
    ours = [model(torch.tensor([ids[:split]]), torch.arange(split).unsqueeze(0))[0, -1]]
    for pos in range(split, len(ids)):
        ours.append(model(torch.tensor([[ids[pos]]]), torch.tensor([[pos]]))[0, -1])
    with torch.no_grad():
        out = reference(torch.tensor([ids[:split]]), use_cache=True)
        theirs = [out.logits[0, -1]]
        for pos in range(split, len(ids)):
            out = reference(torch.tensor([[ids[pos]]]), cache=out.cache, use_cache=True)
            theirs.append(out.logits[0, -1])
    assert (torch.stack(ours) - torch.stack(theirs)).abs().max().item() < TOL


def test_greedy_tokens_match_transformers_generate(engine):
    model, tok = engine
    ids = tok.encode(PROMPT)
    ours = generate(model, tok, [ids], SamplingParams(max_new_tokens=24))[0]
    with torch.no_grad():
        out = to_hf(model).generate(
            torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0,
            min_new_tokens=24,
        )
    theirs = out[0, len(ids):].tolist()
    cut = theirs.index(tok.eos_id) if tok.eos_id in theirs else len(theirs)
    assert ours.tokens == theirs[:cut]
    assert len(ours.tokens) > 8
