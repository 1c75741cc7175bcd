"""Meta-format LLaMA checkpoints: params.json, consolidated.NN.pth shards, checklist.chk.

Meta trained with fairscale model parallelism and saved one file per rank. Column-parallel layers
(output features split) are concatenated along dim 0, row-parallel layers and the embedding (input
features split) along dim 1, and norms are replicated on every rank.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from pathlib import Path

import torch

from inference.llama.errors import CheckpointError
from inference.llama.model import ModelArgs, Transformer, scaled_init_
from inference.llama.tokenizer import tokenizer_train

COLUMN_PARALLEL = ("wq", "wk", "wv", "w1", "w3", "output")
ROW_PARALLEL = ("wo", "w2", "tok_embeddings")
IGNORED_KEYS = ("rope.freqs",)  # Meta's v1 files carry the rotary table; the model recomputes it
CHECKLIST = "checklist.chk"
PARAMS = "params.json"


def split_dim(key: str) -> int | None:
    """The dimension model parallelism split this tensor along, or None for replicated tensors."""
    module = key.rsplit(".", 2)[-2] if key.count(".") >= 1 else key
    if module in COLUMN_PARALLEL:
        return 0
    if module in ROW_PARALLEL:
        return 1
    return None


def shard_paths(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("consolidated.*.pth"))


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checklist_write(ckpt_dir: Path) -> Path:
    """Write checklist.chk ("<md5>  <name>" per line, as md5sum prints) for every file in the folder."""
    lines = [f"{md5_file(p)}  {p.name}\n" for p in sorted(ckpt_dir.iterdir()) if p.is_file() and p.name != CHECKLIST]
    path = ckpt_dir / CHECKLIST
    path.write_text("".join(lines))
    return path


def checklist_verify(ckpt_dir: Path) -> None:
    """Compare every file named in checklist.chk with its md5; raise CheckpointError on the first problem."""
    path = ckpt_dir / CHECKLIST
    if not path.exists():
        raise CheckpointError(f"{path} is missing: download it with the checkpoint, or load without verification.")
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        expected, name = line.split(maxsplit=1)
        target = ckpt_dir / name.strip().lstrip("*")
        if not target.exists():
            raise CheckpointError(f"{target} is listed in {CHECKLIST} but missing: download it again.")
        if md5_file(target) != expected.lower():
            raise CheckpointError(
                f"{target} does not match its md5 in {CHECKLIST} (corrupted or incomplete download): download it again."
            )


def params_read(ckpt_dir: Path) -> ModelArgs:
    path = ckpt_dir / PARAMS
    if not path.exists():
        raise CheckpointError(f"{path} is missing: every Meta checkpoint folder has one; check the --ckpt path.")
    raw = json.loads(path.read_text())
    known = {f.name for f in fields(ModelArgs)}
    # Later files add keys (e.g. ffn_dim_multiplier, n_kv_heads) that LLaMA-1 does not have.
    unsupported = sorted(k for k in raw if k not in known and raw[k] is not None)
    if unsupported:
        raise CheckpointError(f"{path} has {unsupported}, which LLaMA-1 does not use: this engine loads LLaMA-1 only.")
    return ModelArgs(**{k: v for k, v in raw.items() if k in known})


def shards_merge(shards: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One full state dict from the per-rank state dicts, in rank order."""
    merged = {}
    for key, first in shards[0].items():
        if key in IGNORED_KEYS:
            continue
        dim = split_dim(key)
        merged[key] = first if dim is None or len(shards) == 1 else torch.cat([s[key] for s in shards], dim=dim)
    return merged


def shards_split(state: dict[str, torch.Tensor], n_shards: int) -> list[dict[str, torch.Tensor]]:
    """The inverse of shards_merge: what rank r of n_shards would have saved."""
    out = [{} for _ in range(n_shards)]
    for key, tensor in state.items():
        dim = split_dim(key)
        if dim is not None and tensor.shape[dim] % n_shards:
            raise CheckpointError(f"{key} {tuple(tensor.shape)} cannot be split in {n_shards} along dim {dim}.")
        parts = [tensor] * n_shards if dim is None else tensor.chunk(n_shards, dim=dim)
        for rank, part in enumerate(parts):
            out[rank][key] = part.clone()
    return out


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_llama(
    ckpt_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | None = None,
    verify: bool = False,
    max_seq_len: int | None = None,
) -> Transformer:
    """Load a Meta-format checkpoint into a Transformer ready for inference.

    dtype is float32 or bfloat16 anywhere, float16 on CUDA only; device defaults to CUDA when present.
    With verify, every file is checked against checklist.chk first. Raises CheckpointError.
    """
    ckpt_dir = Path(ckpt_dir)
    device = pick_device(device)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise CheckpointError(f"dtype {dtype} is not supported: use float32, bfloat16 or float16 (CUDA).")
    if dtype == torch.float16 and device.type != "cuda":
        raise CheckpointError("float16 is for CUDA only (CPU half matmuls are slow and inexact): use bfloat16.")
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir} is not a folder: pass the folder holding params.json and the shards.")
    if verify:
        checklist_verify(ckpt_dir)
    args = params_read(ckpt_dir)
    paths = shard_paths(ckpt_dir)
    if not paths:
        raise CheckpointError(f"no consolidated.NN.pth in {ckpt_dir}: download the weight shards into it.")
    expected = [f"consolidated.{i:02d}.pth" for i in range(len(paths))]
    if [p.name for p in paths] != expected:
        raise CheckpointError(
            f"shards in {ckpt_dir} are {[p.name for p in paths]}, expected {expected}: a shard is missing."
        )
    n = len(paths)
    if args.dim % n or args.n_heads % n:
        raise CheckpointError(
            f"{n} shards do not divide dim {args.dim} and n_heads {args.n_heads}: the folder mixes files "
            "of different models; download the checkpoint again."
        )
    # mmap keeps host memory at one copy of the weights; weights_only refuses pickled code.
    shards = [torch.load(p, map_location="cpu", weights_only=True, mmap=True) for p in paths]
    if any(set(s) != set(shards[0]) for s in shards):
        raise CheckpointError(f"shards in {ckpt_dir} hold different tensors: download the checkpoint again.")
    state = shards_merge(shards)
    if args.vocab_size <= 0 and "tok_embeddings.weight" in state:
        args.vocab_size = state["tok_embeddings.weight"].shape[0]
    if max_seq_len is not None:
        args.max_seq_len = max_seq_len

    with torch.device("meta"):
        model = Transformer(args)
    expected_shapes = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected_shapes) - set(state))
    unexpected = sorted(set(state) - set(expected_shapes))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt_dir} does not match params.json: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "check that params.json belongs to these shards."
        )
    for key, shape in expected_shapes.items():
        if state[key].shape != shape:
            raise CheckpointError(
                f"{key} has shape {tuple(state[key].shape)} but params.json implies {tuple(shape)}: "
                "check that params.json belongs to these shards."
            )
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True, strict=True)
    return model.eval().requires_grad_(False)


def tiny_llama_make(
    out_dir: str | Path,
    *,
    dim: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    vocab_size: int = 512,
    n_shards: int = 1,
    seed: int = 0,
    multiple_of: int = 32,
    norm_eps: float = 1e-6,
) -> Path:
    """Write a random LLaMA-1 checkpoint in Meta's exact layout, with a trained tokenizer and checklist.chk.

    The full weights depend only on the seed and sizes, so checkpoints with different shard counts hold
    the same model.
    """
    if n_shards < 1 or dim % n_heads or (dim // n_heads) % 2:
        raise CheckpointError(f"dim {dim} must split into {n_heads} heads of even size.")
    args = ModelArgs(dim=dim, n_layers=n_layers, n_heads=n_heads, vocab_size=vocab_size,
                     multiple_of=multiple_of, norm_eps=norm_eps)
    for name, size in (("dim", dim), ("n_heads", n_heads), ("hidden size", args.hidden_dim), ("vocab", vocab_size)):
        if size % n_shards:
            raise CheckpointError(f"{n_shards} shards do not divide the {name} ({size}): pick a divisor.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in shard_paths(out_dir):
        stale.unlink()
    tokenizer_train(out_dir / "tokenizer.model", vocab_size=vocab_size)

    model = Transformer(args)
    scaled_init_(model, generator=torch.Generator().manual_seed(seed))
    # Meta ships float16 weights and the v1 rotary table; keep both so loaders are tested on the real thing.
    state = {k: v.to(torch.float16) for k, v in model.state_dict().items()}
    head_dim = args.head_dim
    rope = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    for rank, shard in enumerate(shards_split(state, n_shards)):
        shard["rope.freqs"] = rope.to(torch.float16)
        torch.save(shard, out_dir / f"consolidated.{rank:02d}.pth")
    params = {"dim": dim, "multiple_of": multiple_of, "n_heads": n_heads, "n_layers": n_layers,
              "norm_eps": norm_eps, "vocab_size": vocab_size}
    (out_dir / PARAMS).write_text(json.dumps(params) + "\n")
    checklist_write(out_dir)
    return out_dir


def parameter_count(model: Transformer) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
