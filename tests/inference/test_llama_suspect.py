"""Reading a suspect copy for identification (inference/llama/suspect.py): a recipient's marked
copy of a two-shard checkpoint, read back as Meta's shards or after conversion to transformers'
layout (q/k rows permuted, safetensors, bfloat16), still names its recipient among a hundred."""

import numpy as np
import pytest
import torch

from inference.llama import fingerprint
from inference.llama.checkpoint import load_llama, shard_paths, tiny_llama_make
from inference.llama.hf_reference import hf_checkpoint_save, to_hf
from inference.llama.suspect import from_transformers, hf_to_meta_qk, shard_slices, suspect_read
from inference.llama.torch_zip import MarkedFile, checkpoint_layout

MASTER = b"s" * 32
HEADS = 4


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return tiny_llama_make(tmp_path_factory.mktemp("orig") / "ckpt", n_shards=2, seed=3, n_heads=HEADS)


def key_of(grant: str):
    """A tensor of a file of a grant's copy; keyed names are 'file:tensor'."""
    return lambda composite: fingerprint.tensor_key(MASTER, grant, *composite.split(":", 1)) if (
        not composite.endswith("norm.weight")) else None  # fmt: skip


def marked_copy(original, grant: str, out):
    """The grant's copy of the checkpoint folder, as the gateway would send it."""
    out.mkdir(parents=True)
    for path in sorted(original.iterdir()):
        if path.name.startswith("consolidated."):
            layout = checkpoint_layout(path)
            copy = MarkedFile(layout, lambda name, f=path.name: key_of(grant)(f"{f}:{name}"), path)
            (out / path.name).write_bytes(copy.read(0, layout.size))
        else:
            (out / path.name).write_bytes(path.read_bytes())
    return out


def original_by_file(original):
    shards = [torch.load(p, weights_only=True) for p in shard_paths(original)]
    names = [p.name for p in shard_paths(original)]
    flat = {f"{f}:{n}": t.numpy() for f, s in zip(names, shards, strict=True) for n, t in s.items()
            if t.dtype == torch.float16}  # fmt: skip
    return flat, names, [{n: tuple(t.shape) for n, t in s.items()} for s in shards]


def suspect_by_file(suspect, names, shapes):
    return {f"{f}:{n}": t.numpy() for f, part in zip(names, shard_slices(suspect, shapes), strict=True)
            for n, t in part.items()}  # fmt: skip


def identify(original, suspect_path):
    flat, names, shapes = original_by_file(original)
    suspect = suspect_by_file(suspect_read(suspect_path, n_heads=HEADS), names, shapes)
    return fingerprint.identify(flat, suspect, {f"g-{i}": key_of(f"g-{i}") for i in range(1, 101)})


def test_hf_qk_rows_go_back_to_metas_order():
    from inference.llama.hf_reference import meta_to_hf_qk

    w = torch.randn(64, 64)
    assert torch.equal(hf_to_meta_qk(meta_to_hf_qk(w, HEADS), HEADS), w)


def test_a_marked_meta_copy_names_its_grant(original, tmp_path):
    copy = marked_copy(original, "g-17", tmp_path / "leak")

    result = identify(original, copy)

    assert result.accused == ["g-17"], result.candidates[:3]
    assert result.candidates[1][1] < 5 and result.tensors_compared > 10


def test_one_shard_alone_still_names_its_grant(original, tmp_path):
    copy = marked_copy(original, "g-5", tmp_path / "leak")

    result = identify(original, copy / "consolidated.01.pth")

    assert result.accused == ["g-5"], result.candidates[:3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_copy_converted_to_transformers_layout_names_its_grant(original, tmp_path, dtype):
    copy = marked_copy(original, "g-42", tmp_path / "leak")
    model = load_llama(copy, dtype=torch.float32, device="cpu").to(dtype)
    hf_dir = hf_checkpoint_save(model, copy / "tokenizer.model", tmp_path / "hf")
    assert any(hf_dir.glob("*.safetensors"))

    result = identify(original, hf_dir)

    assert result.accused == ["g-42"], result.candidates[:3]


def test_transformers_names_map_to_metas(original):
    model = load_llama(original, dtype=torch.float32, device="cpu")
    converted = from_transformers(to_hf(model).state_dict(), HEADS)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    assert all(torch.equal(converted[n], ours[n]) for n in ours)
    assert np.isfinite(sum(float(t.sum()) for t in converted.values()))
