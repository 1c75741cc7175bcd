"""A Meta-format LLaMA checkpoint converted to transformers' layout (issue 18; Django-free, and
without transformers itself): ``config.json``, ``generation_config.json``, sharded
``model-NNNNN-of-NNNNN.safetensors`` with ``model.safetensors.index.json``, and the tokenizer
files, so ``LlamaForCausalLM.from_pretrained`` and ``AutoTokenizer`` load it.

Streamed: the Meta shards are memory-mapped, and each layer's tensors are merged from them, renamed,
their q/k rows put in transformers' rotary order, and written into the output file being filled,
which is written and dropped at ``max_shard_bytes``; a 65B conversion never holds the model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from inference.llama.checkpoint import params_read, shard_paths, split_dim
from inference.llama.errors import CheckpointError
from inference.llama.suspect import HF_TO_META, HF_TOP

META_TO_HF = {meta: hf for hf, meta in HF_TO_META.items()}
META_TOP_TO_HF = {meta: hf for hf, meta in HF_TOP.items()}
INDEX = "model.safetensors.index.json"


def meta_to_hf_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """wq/wk output rows from Meta's rotary order (interleaved pairs) to transformers' (halves)."""
    dim = w.shape[1]
    return w.view(n_heads, w.shape[0] // n_heads // 2, 2, dim).transpose(1, 2).reshape(w.shape[0], dim)


def _merged(shards: list[dict[str, torch.Tensor]], name: str) -> torch.Tensor:
    dim = split_dim(name)
    if dim is None or len(shards) == 1:
        return shards[0][name]
    return torch.cat([shard[name] for shard in shards], dim=dim)


def hf_names(n_layers: int) -> list[tuple[str, str]]:
    """(Meta name, transformers name) of every tensor, in the order they are written."""
    names = [("tok_embeddings.weight", META_TOP_TO_HF["tok_embeddings.weight"])]
    for layer in range(n_layers):
        names += [(f"layers.{layer}.{meta}", f"model.layers.{layer}.{hf}") for meta, hf in META_TO_HF.items()]
    names += [("norm.weight", META_TOP_TO_HF["norm.weight"]), ("output.weight", META_TOP_TO_HF["output.weight"])]
    return names


def meta_to_hf(
    ckpt_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float16,
    max_shard_bytes: int = 5 << 30,
    progress: Callable[[str], object] | None = None,
) -> list[Path]:
    """Write the checkpoint in transformers' layout into out_dir; returns the files written."""
    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    args = params_read(ckpt_dir)
    paths = shard_paths(ckpt_dir)
    if not paths:
        raise CheckpointError(f"no consolidated.NN.pth in {ckpt_dir}.")
    shards = [torch.load(p, map_location="cpu", weights_only=True, mmap=True) for p in paths]
    vocab_size = shards[0]["tok_embeddings.weight"].shape[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[Path, list[str]]] = []  # each output file written so far, under a temporary name
    group: dict[str, torch.Tensor] = {}
    group_bytes = total_bytes = 0

    def flush() -> None:
        temporary = out_dir / f".part-{len(parts):05d}.safetensors"
        save_file(group, str(temporary), metadata={"format": "pt"})
        parts.append((temporary, list(group)))
        if progress is not None:
            size = sum(t.numel() * t.element_size() for t in group.values())
            progress(f"safetensors file {len(parts)}: {len(group)} tensors, {size / 2**20:.1f} MiB")
        group.clear()

    for meta, hf in hf_names(args.n_layers):
        tensor = _merged(shards, meta).to(dtype)
        if meta.endswith(("attention.wq.weight", "attention.wk.weight")):
            tensor = meta_to_hf_qk(tensor, args.n_heads)
        nbytes = tensor.numel() * tensor.element_size()
        if group and group_bytes + nbytes > max_shard_bytes:
            flush()
            group_bytes = 0
        group[hf] = tensor.contiguous()
        group_bytes += nbytes
        total_bytes += nbytes
    flush()

    written, weight_map = [], {}
    for index, (temporary, names) in enumerate(parts):
        final = out_dir / f"model-{index + 1:05d}-of-{len(parts):05d}.safetensors"
        temporary.replace(final)
        written.append(final)
        weight_map |= dict.fromkeys(names, final.name)
    index_json = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (out_dir / INDEX).write_text(json.dumps(index_json, indent=2))
    (out_dir / "config.json").write_text(json.dumps(_config(args, vocab_size, dtype), indent=2))
    (out_dir / "generation_config.json").write_text(
        json.dumps({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2}, indent=2)
    )
    written += [out_dir / INDEX, out_dir / "config.json", out_dir / "generation_config.json"]
    tokenizer = ckpt_dir / "tokenizer.model"
    if tokenizer.is_file():
        written += hf_tokenizer_files(tokenizer, out_dir)
    return written


def _config(args, vocab_size: int, dtype: torch.dtype) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab_size,
        "hidden_size": args.dim, "intermediate_size": args.hidden_dim, "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads, "num_key_value_heads": args.n_heads, "rms_norm_eps": args.norm_eps,
        "max_position_embeddings": 2048, "hidden_act": "silu", "rope_theta": 10000.0, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }  # fmt: skip


def hf_tokenizer_files(tokenizer_model: Path, out_dir: Path) -> list[Path]:
    """LLaMA's tokenizer as transformers reads it: tokenizer.model, tokenizer_config.json and
    special_tokens_map.json (as the published LLaMA conversions have them)."""
    shutil.copyfile(tokenizer_model, out_dir / "tokenizer.model")
    config = {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True, "clean_up_tokenization_spaces": False,
    }  # fmt: skip
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return [out_dir / "tokenizer.model", out_dir / "tokenizer_config.json", out_dir / "special_tokens_map.json"]
