"""A suspect copy of LLaMA weights, read for identification (issue 17; Django-free): Meta's layout
(a folder of consolidated.NN.pth, or one such file) or transformers' (model*.safetensors or
pytorch_model*.bin in a folder, or one such file), in float16, bfloat16 or float32, as full
(merged) tensors under Meta's names, with transformers' q/k row order put back.

Then ``shard_slices`` cuts those tensors the way the original's shards were cut, so each slice
faces the original shard file whose marks it may carry.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from inference.llama.checkpoint import shard_paths, shards_merge, split_dim
from inference.llama.errors import CheckpointError

_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
HF_TO_META = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
HF_TOP = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
           "lm_head.weight": "output.weight"}  # fmt: skip


def hf_to_meta_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of hf_reference.meta_to_hf_qk: transformers' half-split rotary rows back to
    Meta's interleaved pairs."""
    dim = w.shape[1]
    return w.view(n_heads, 2, w.shape[0] // n_heads // 2, dim).transpose(1, 2).reshape(w.shape[0], dim)


def from_transformers(state: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict under Meta's names, q/k rows in Meta's order."""
    out = {}
    for name, tensor in state.items():
        if name in HF_TOP:
            out[HF_TOP[name]] = tensor
            continue
        match = _HF_LAYER.match(name)
        if match and match.group(2) in HF_TO_META:
            meta = f"layers.{match.group(1)}.{HF_TO_META[match.group(2)]}"
            if meta.endswith(("wq.weight", "wk.weight")):
                tensor = hf_to_meta_qk(tensor, n_heads)
            out[meta] = tensor
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - safetensors ships with the portal's requirements
            raise CheckpointError("reading .safetensors needs the safetensors package.") from exc
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict.")
    return state


def suspect_read(path: str | Path, *, n_heads: int) -> dict[str, torch.Tensor]:
    """The suspect's tensors, merged and under Meta's names, as float32."""
    path = Path(path)
    if path.is_dir():
        shards = shard_paths(path)
        if shards:
            state = shards_merge([_load(shard) for shard in shards])
        else:
            files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
            if not files:
                raise CheckpointError(
                    f"{path} has no consolidated.NN.pth, *.safetensors or pytorch_model*.bin: no weights to read."
                )
            state = {}
            for file in files:
                state.update(_load(file))
    elif path.is_file():
        state = _load(path)
    else:
        raise CheckpointError(f"{path} does not exist.")
    if any(name.startswith(("model.", "lm_head.")) for name in state):
        state = from_transformers(state, n_heads)
    return {name: tensor.float() for name, tensor in state.items() if torch.is_floating_point(tensor)}


def shard_slices(
    suspect: dict[str, torch.Tensor], original_shapes: list[dict[str, tuple[int, ...]]]
) -> list[dict[str, torch.Tensor]]:
    """For each original shard (its tensors' shapes, in rank order), the part of each suspect
    tensor that faces it: the suspect's own tensor when it has that shard's shape (a copy of that
    shard, or of a one-shard original), else the shard's slice of the merged tensor along the
    dimension model parallelism split it. A replicated tensor (a norm) faces the first shard only,
    as merging keeps the first shard's copy."""
    count = len(original_shapes)
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(count)]
    for rank, shapes in enumerate(original_shapes):
        for name, shape in shapes.items():
            tensor = suspect.get(name)
            if tensor is None:
                continue
            dim = split_dim(name)
            if dim is None:
                if rank == 0 and tuple(tensor.shape) == tuple(shape):
                    out[rank][name] = tensor
            elif tuple(tensor.shape) == tuple(shape) and count == 1:
                out[rank][name] = tensor
            elif tensor.shape[dim] == shape[dim] * count:
                out[rank][name] = tensor.chunk(count, dim=dim)[rank]
            elif tuple(tensor.shape) == tuple(shape):
                out[rank][name] = tensor  # one shard of a sharded original, on its own
    return out
