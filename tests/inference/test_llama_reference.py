"""Our LLaMA against transformers' LlamaForCausalLM on the same weights (float32)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inference.llama.checkpoint import load_llama
from inference.llama.generate import SamplingParams, generate
from inference.llama.model import Transformer
from inference.llama.tokenizer import Tokenizer

TOL = 1e-4
PROMPT = "The river ran slow and brown past the mill"


def meta_to_hf_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    # Meta rotates interleaved pairs (x0, x1); HF rotates halves (x_i, x_{i+d/2}): reorder the output rows.
    dim = w.shape[1]
    return w.view(n_heads, w.shape[0] // n_heads // 2, 2, dim).transpose(1, 2).reshape(w.shape[0], dim)


def to_hf(model: Transformer, *, permute: bool = True) -> LlamaForCausalLM:
    a = model.args
    config = LlamaConfig(
        vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.hidden_dim, num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads, num_key_value_heads=a.n_heads, rms_norm_eps=a.norm_eps,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, rope_theta=10000.0,
        max_position_embeddings=a.max_seq_len, hidden_act="silu", attn_implementation="eager",
    )
    qk = (lambda w: meta_to_hf_qk(w, a.n_heads)) if permute else (lambda w: w)
    sd = model.state_dict()
    hf = {"model.embed_tokens.weight": sd["tok_embeddings.weight"], "model.norm.weight": sd["norm.weight"],
          "lm_head.weight": sd["output.weight"]}
    for i in range(a.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        hf |= {
            q + "self_attn.q_proj.weight": qk(sd[p + "attention.wq.weight"]),
            q + "self_attn.k_proj.weight": qk(sd[p + "attention.wk.weight"]),
            q + "self_attn.v_proj.weight": sd[p + "attention.wv.weight"],
            q + "self_attn.o_proj.weight": sd[p + "attention.wo.weight"],
            q + "mlp.gate_proj.weight": sd[p + "feed_forward.w1.weight"],
            q + "mlp.up_proj.weight": sd[p + "feed_forward.w3.weight"],
            q + "mlp.down_proj.weight": sd[p + "feed_forward.w2.weight"],
            q + "input_layernorm.weight": sd[p + "attention_norm.weight"],
            q + "post_attention_layernorm.weight": sd[p + "ffn_norm.weight"],
        }
    reference = LlamaForCausalLM(config)
    reference.load_state_dict({k: v.clone() for k, v in hf.items()}, strict=True)
    return reference.eval()


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
