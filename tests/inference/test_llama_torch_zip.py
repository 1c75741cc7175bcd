"""A recipient's marked copy of a torch.save file, served from the original by byte ranges
(inference/llama/torch_zip.py): it loads with torch.load(weights_only=True), passes
zipfile.testzip(), differs from another recipient's only in marked weights, has the original's
length, and any range equals the same bytes of the whole copy."""

import io
import random
import zipfile

import numpy as np
import pytest
import torch

from inference.llama import fingerprint
from inference.llama.torch_zip import LayoutError, MarkedFile, checkpoint_layout

MASTER = b"k" * 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    generator = torch.Generator().manual_seed(1)
    base = (torch.randn(64, 128, generator=generator) * 0.02).half()
    state = {
        # Big enough (64 and 32 pages) that most of each is sent as the original's bytes.
        "layers.0.attention.wq.weight": (torch.randn(1024, 1024, generator=generator) * 0.02).half(),
        "layers.0.attention_norm.weight": torch.ones(1024, dtype=torch.float16),
        "tok_embeddings.weight": (torch.randn(512, 1024, generator=generator)).half(),
        "a_view": base[3:30],  # a matrix that starts inside its storage
        "rope.freqs": torch.rand(8, generator=generator),  # float32: never marked
    }
    path = tmp_path_factory.mktemp("ckpt") / "consolidated.00.pth"
    torch.save(state, path)
    return path, state


def keys(path, recipient: str):
    return lambda name: (
        None if name.endswith("norm.weight") else fingerprint.tensor_key(MASTER, recipient, path.name, name)
    )


def copy_of(path, recipient: str) -> MarkedFile:
    return MarkedFile(checkpoint_layout(path), keys(path, recipient), path)


def whole(marked: MarkedFile) -> bytes:
    return marked.read(0, marked.layout.size)


def test_the_layout_finds_every_tensors_bytes(checkpoint):
    path, state = checkpoint
    layout = checkpoint_layout(path)
    raw = path.read_bytes()
    assert {span.name for span in layout.tensors} == set(state)
    for span in layout.tensors:
        entry = layout.entries[span.entry]
        first, last = span.byte_range
        data = raw[entry.data_offset + first : entry.data_offset + last]
        assert data == state[span.name].contiguous().numpy().tobytes(), span.name


def test_a_marked_copy_loads_passes_the_zip_check_and_changes_only_marked_weights(checkpoint):
    path, state = checkpoint
    data = whole(copy_of(path, "grant-1"))

    assert len(data) == path.stat().st_size
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["layers.0.attention_norm.weight"], state["layers.0.attention_norm.weight"])
    assert torch.equal(loaded["rope.freqs"], state["rope.freqs"])
    for name in ("layers.0.attention.wq.weight", "tok_embeddings.weight", "a_view"):
        expected = fingerprint.mark(state[name].numpy(), fingerprint.tensor_key(MASTER, "grant-1", path.name, name))
        assert np.array_equal(loaded[name].numpy(), expected), name
    for name in ("layers.0.attention.wq.weight", "tok_embeddings.weight"):
        assert not torch.equal(loaded[name], state[name])
    other = torch.load(io.BytesIO(whole(copy_of(path, "grant-2"))), weights_only=True)
    assert not torch.equal(other["layers.0.attention.wq.weight"], loaded["layers.0.attention.wq.weight"])


def test_any_range_equals_the_same_bytes_of_the_whole_copy(checkpoint):
    path, _ = checkpoint
    marked = copy_of(path, "grant-3")
    data = whole(marked)
    rng = random.Random(7)
    for _ in range(200):
        start = rng.randrange(0, len(data))
        length = rng.choice([1, 2, 3, 63, 64, 65, 1000, rng.randrange(1, len(data))])
        assert marked.read(start, length) == data[start : start + length], (start, length)
    assert marked.read(len(data), 10) == b"" and marked.read(len(data) - 3, 10) == data[-3:]


def test_pieces_name_the_original_runs_and_make_only_the_marked_pages_and_crcs(checkpoint):
    path, _ = checkpoint
    marked = copy_of(path, "grant-4")
    pieces = list(marked.pieces(0, marked.size))
    made = sum(len(piece) for piece in pieces if isinstance(piece, bytes))
    assert made == marked.marked_bytes + 8 * len(marked.marked_entries)
    # One page in sixteen of the weights, and one page of each tensor always.
    assert 0 < made < marked.size / 6
    original = path.read_bytes()
    rebuilt = b"".join(original[p[0] : p[1]] if isinstance(p, tuple) else p for p in pieces)
    assert rebuilt == whole(marked)


def test_crc_shift_is_zlibs_combine():
    import zlib

    from inference.llama.torch_zip import crc32_shift

    rng = random.Random(3)
    for length_a, length_b in [(1, 1), (100, 8192), (5000, 12345), (0, 10), (70000, 3)]:
        a, b = rng.randbytes(length_a), rng.randbytes(length_b)
        assert zlib.crc32(a + b) == crc32_shift(zlib.crc32(a), length_b) ^ zlib.crc32(b)


def test_the_layout_survives_json_and_serves_the_same_copy(checkpoint):
    import json

    from inference.llama.torch_zip import layout_from_json, layout_to_json

    path, _ = checkpoint
    stored = layout_from_json(json.loads(json.dumps(layout_to_json(checkpoint_layout(path)))))
    assert stored == checkpoint_layout(path)
    again = MarkedFile(stored, keys(path, "grant-5"), lambda start, n: path.read_bytes()[start : start + n])
    assert whole(again) == whole(copy_of(path, "grant-5"))


def test_a_file_that_is_not_a_torch_checkpoint_is_refused(tmp_path):
    plain = tmp_path / "params.zip"
    with zipfile.ZipFile(plain, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("params.json", "{}")
    with pytest.raises(LayoutError):
        checkpoint_layout(plain)
