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

import numpy as np
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


# --- A recipient's transformers-layout copy, made from their Meta copy ----------------------------


def meta_name_of(hf_name: str) -> str | None:
    """The Meta name of a transformers tensor name (None for a name the conversion never writes)."""
    top = {hf: meta for meta, hf in META_TOP_TO_HF.items()}
    if hf_name in top:
        return top[hf_name]
    layer, _, rest = hf_name.removeprefix("model.layers.").partition(".")
    if hf_name.startswith("model.layers.") and layer.isdigit():
        meta = HF_TO_META.get(rest)
        return f"layers.{layer}.{meta}" if meta else None
    return None


class HfCopy:
    """A safetensors file of ``meta_to_hf``'s output as ``meta_to_hf`` would write it from other
    bytes of the same Meta shards: a recipient's transformers copy made from their own marked Meta
    copy, so the two layouts a recipient holds carry the same marks (diffing them shows nothing),
    and identification needs only the Meta marks.

    ``hf_layout``/``hf_read``: the published file's layout and bytes (its header is the copy's);
    ``shard_layouts``/``shard_reads``: each Meta shard's layout and the recipient's bytes of it, in
    rank order; every tensor of the file must come from float16 Meta tensors (what carries marks).
    The same interface as torch_zip.MarkedFile, so the gateway serves it the same way."""

    def __init__(self, hf_layout, hf_read, shard_layouts, shard_reads, n_heads: int):
        self.layout, self._hf_read = hf_layout, hf_read
        self._shard_reads, self._n_heads = shard_reads, n_heads
        self._shard_spans = [{span.name: (layout, span) for span in layout.tensors} for layout in shard_layouts]
        data = hf_layout.entries[next(iter(hf_layout.entries))]
        self._data_offset = data.data_offset
        self._spans = sorted(hf_layout.tensors, key=lambda span: span.storage_offset)
        for span in self._spans:
            meta = meta_name_of(span.name)
            if meta is None or span.dtype != "float16":
                raise CheckpointError(f"{span.name} is not a float16 tensor of the conversion.")
            for spans in self._shard_spans[: 1 if split_dim(meta) is None else None]:
                if meta not in spans or spans[meta][1].dtype != "float16":
                    raise CheckpointError(f"{span.name}: the Meta shards hold no float16 {meta}.")

    @property
    def size(self) -> int:
        return self.layout.size

    marked_bytes = 0  # the marks are the Meta copy's

    def crcs(self) -> dict:
        return {}  # a safetensors file holds no checksum

    def crcs_known(self, crcs) -> None:
        pass

    def crcs_needed(self, start: int, stop: int) -> bool:
        return False

    def _meta_rows(self, rank: int, meta: str, first: int, stop: int) -> np.ndarray:
        layout, span = self._shard_spans[rank][meta]
        columns = span.numel // span.shape[0] if len(span.shape) > 1 else 1
        base = layout.entries[span.entry].data_offset + span.storage_offset * 2
        raw = self._shard_reads[rank](base + first * columns * 2, (stop - first) * columns * 2)
        return np.frombuffer(raw, dtype="<u2").reshape(stop - first, columns)

    def _merged_rows(self, meta: str, rows: int, first: int, stop: int) -> np.ndarray:
        dim, count = split_dim(meta), len(self._shard_spans)
        if dim is None or count == 1:
            return self._meta_rows(0, meta, first, stop)
        if dim == 1:
            return np.hstack([self._meta_rows(rank, meta, first, stop) for rank in range(count)])
        per_shard, parts = rows // count, []
        for rank in range(first // per_shard, (stop - 1) // per_shard + 1):
            lo, hi = max(first, rank * per_shard), min(stop, (rank + 1) * per_shard)
            parts.append(self._meta_rows(rank, meta, lo - rank * per_shard, hi - rank * per_shard))
        return np.vstack(parts)

    def _tensor_rows(self, span, first: int, stop: int) -> np.ndarray:
        """Rows first .. stop of the transformers tensor (a 1-D one: its elements), as uint16."""
        meta = meta_name_of(span.name)
        rows = span.shape[0]
        if meta.endswith(("attention.wq.weight", "attention.wk.weight")):
            # Transformers' row h*hd + k*half + j is Meta's row h*hd + 2j + k (meta_to_hf_qk).
            per_head = rows // self._n_heads
            half = per_head // 2
            wanted = np.arange(first, stop)
            within = wanted % per_head
            meta_rows = wanted - within + 2 * (within % half) + within // half
            lo, hi = int(meta_rows.min()), int(meta_rows.max()) + 1
            return self._merged_rows(meta, rows, lo, hi)[meta_rows - lo]
        return self._merged_rows(meta, rows, first, stop)

    def read(self, start: int, length: int) -> bytes:
        stop = min(start + max(length, 0), self.size)
        if start >= stop:
            return b""
        out = bytearray()
        if start < self._data_offset:
            out += self._hf_read(start, min(stop, self._data_offset) - start)
        for span in self._spans:
            first_byte = self._data_offset + span.storage_offset * 2
            last_byte = first_byte + span.numel * 2
            lo, hi = max(start, first_byte), min(stop, last_byte)
            if lo >= hi:
                continue
            columns = span.numel // span.shape[0] if len(span.shape) > 1 else 1
            row_bytes = columns * 2
            first_row, stop_row = (lo - first_byte) // row_bytes, -(-(hi - first_byte) // row_bytes)
            block = self._tensor_rows(span, first_row, stop_row).tobytes()
            skip = lo - first_byte - first_row * row_bytes
            out += block[skip : skip + hi - lo]
        return bytes(out)

    def pieces(self, start: int, stop: int, read=None):
        """As MarkedFile.pieces: the header as a run of the published file, the tensors as bytes
        (1 MiB at a time)."""
        stop = min(stop, self.size)
        if start < self._data_offset:
            yield (start, min(stop, self._data_offset))
            start = min(stop, self._data_offset)
        while start < stop:
            block = self.read(start, min(1 << 20, stop - start))
            if not block:
                return
            yield block
            start += len(block)

    def patched(self, start: int, original: bytes) -> bytes:
        return self.read(start, len(original))
