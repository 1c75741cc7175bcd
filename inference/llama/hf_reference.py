"""Our model's weights in transformers' LlamaForCausalLM, the reference the tests and benches compare with.

transformers is a test and benchmark dependency only; it is imported here, never by the portal.
"""

from __future__ import annotations

from pathlib import Path

from inference.llama.hf_convert import hf_tokenizer_files, meta_to_hf_qk
from inference.llama.model import Transformer


def to_hf(model: Transformer, *, permute: bool = True, attn_implementation: str = "eager"):
    """A LlamaForCausalLM holding the same weights (copies), in the same dtype, on the same device.

    permute=False skips the rotary reordering: the negative control of the correctness tests.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    a = model.args
    weight = model.output.weight
    config = LlamaConfig(
        vocab_size=a.vocab_size, hidden_size=a.dim, intermediate_size=a.hidden_dim, num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads, num_key_value_heads=a.n_heads, rms_norm_eps=a.norm_eps,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, rope_theta=10000.0,
        max_position_embeddings=a.max_seq_len, hidden_act="silu", attn_implementation=attn_implementation,
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
    reference = LlamaForCausalLM(config).to(device=weight.device, dtype=weight.dtype)
    reference.load_state_dict({k: v.clone() for k, v in hf.items()}, strict=True)
    return reference.eval()


def hf_tokenizer_save(tokenizer_model: str | Path, out_dir: str | Path) -> Path:
    """LLaMA's tokenizer as a transformers folder (hf_convert.hf_tokenizer_files); AutoTokenizer
    builds its LlamaTokenizer from it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_tokenizer_files(Path(tokenizer_model), out_dir)
    return out_dir


def hf_checkpoint_save(model: Transformer, tokenizer_model: str | Path, out_dir: str | Path) -> Path:
    """The model in transformers' layout (config.json, model.safetensors, generation_config.json)
    with its tokenizer: a folder `from_pretrained` and lm-evaluation-harness's `hf` model load."""
    out_dir = Path(out_dir)
    to_hf(model).save_pretrained(out_dir)
    return hf_tokenizer_save(tokenizer_model, out_dir)
