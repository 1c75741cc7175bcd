"""The arithmetic of per-recipient fingerprints (inference/llama/fingerprint.py) on float16
weights: seekable keyed signs, keyed pages, what is marked and what is not, and identification of
the right recipient among a hundred after a bfloat16 cast, per-channel int8 quantization and
averaging."""

import numpy as np
import pytest
import torch

from inference.llama.fingerprint import (
    AMPLITUDE_ULP,
    BLOCK,
    PAGE,
    PAGE_SHARE,
    Evidence,
    bfloat16_noise,
    eligible,
    false_accusation_bound,
    mark,
    pages_marked,
    signs,
    tensor_key,
    z_score,
)

MASTER = b"m" * 32
RECIPIENTS = [f"grant-{i}" for i in range(100)]


@pytest.fixture(scope="module")
def weights():
    """A weight matrix as LLaMA's are: float16, small values (std 0.02), 1024 x 1024 (256 pages)."""
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(1024, 1024, generator=generator) * 0.02).to(torch.float16).numpy()


def key(recipient: str) -> bytes:
    return tensor_key(MASTER, recipient, "consolidated.00.pth", "layers.0.attention.wq.weight")


def scores(original, suspect, noise=0.0) -> dict[str, float]:
    evidence = Evidence.from_suspect(original, suspect, noise)
    return {r: z_score([(evidence, key(r))]) for r in RECIPIENTS}


def test_signs_are_the_same_whichever_range_they_are_asked_in():
    k = key("grant-1")
    whole = signs(k, 0, 3 * PAGE)
    assert set(np.unique(whole)) == {-1, 1} and abs(whole.mean()) < 0.05
    for start, count in [(0, 10), (PAGE - 5, 10), (1234, PAGE + 7), (2 * PAGE, PAGE)]:
        assert np.array_equal(signs(k, start, count), whole[start : start + count])
    assert not np.array_equal(signs(key("grant-2"), 0, 1000), whole[:1000])
    assert len(signs(k, 5, 0)) == 0


def test_pages_are_drawn_per_key_one_in_page_share_and_seekable():
    chosen = pages_marked(key("grant-1"), 16_000)
    assert abs(chosen.mean() - 1 / PAGE_SHARE) < 0.01
    assert np.array_equal(pages_marked(key("grant-1"), 16_000, 777, 100), chosen[777:877])
    assert not np.array_equal(pages_marked(key("grant-2"), 16_000), chosen)
    # A tensor of a page or two always has one marked: a small model's copy still carries marks.
    assert all(pages_marked(key(f"grant-{i}"), 1).all() for i in range(50))
    assert all(pages_marked(key(f"grant-{i}"), 3).any() for i in range(50))


def test_a_mark_moves_eligible_weights_of_marked_pages_by_the_amplitude_and_leaves_the_rest(weights):
    marked = mark(weights, key("grant-1"))
    steps = (marked.view(np.uint16).astype(np.int32) - weights.view(np.uint16).astype(np.int32)).reshape(-1)
    in_marked_page = np.repeat(pages_marked(key("grant-1"), weights.size // PAGE), PAGE)
    mask = eligible(weights).reshape(-1) & in_marked_page
    assert 0 < in_marked_page.mean() < 0.15
    assert set(np.unique(np.abs(steps[mask]))) == {AMPLITUDE_ULP}
    assert not steps[~mask].any()
    assert eligible(weights).mean() > 0.8
    # Each block's largest magnitude stays, so a block quantizer picks the same scale.
    blocks = np.abs(weights.reshape(-1, BLOCK).astype(np.float32))
    assert np.array_equal(blocks.max(axis=1), np.abs(marked.reshape(-1, BLOCK).astype(np.float32)).max(axis=1))
    assert not np.array_equal(marked, mark(weights, key("grant-2")))


def test_a_stretch_of_a_tensor_is_marked_as_the_whole_marks_it(weights):
    flat = weights.reshape(-1)
    whole = mark(flat, key("grant-3"))
    start, stop = 37 * BLOCK, 37 * BLOCK + 9 * PAGE
    assert np.array_equal(mark(flat[start:stop], key("grant-3"), start=start, numel=flat.size), whole[start:stop])
    assert np.array_equal(mark(flat[stop:], key("grant-3"), start=stop), whole[stop:])  # to the tensor's end
    with pytest.raises(ValueError):
        mark(flat[5:100], key("grant-3"), start=5)


def test_zeros_subnormals_and_extremes_are_never_marked():
    values = np.array([0.0, -0.0, 6e-8, 1e-5, 65504.0, -65504.0, 0.5, -0.25] * 4, dtype=np.float16)
    mask = eligible(values)
    assert not mask[[0, 1, 2, 3, 4, 5]].any()  # zeros, subnormals, the largest finite values
    assert mask.sum() > 0


@pytest.mark.parametrize("copy", ["exact", "bfloat16", "int8"])
def test_the_recipient_is_named_after_what_leakers_do_and_nobody_else_is(weights, copy):
    marked = mark(weights, key("grant-42"))
    if copy == "exact":
        suspect, noise = marked, 0.0
    elif copy == "bfloat16":
        suspect = torch.from_numpy(marked).to(torch.bfloat16).float().numpy()
        noise = bfloat16_noise(weights)
    else:  # per-channel (per-row) symmetric int8, dequantized
        rows = marked.astype(np.float32)
        step = np.abs(rows).max(axis=1, keepdims=True) / 127
        suspect = np.round(rows / step) * step
        noise = np.broadcast_to(step**2 / 12, rows.shape).reshape(-1)

    z = scores(weights, suspect, noise)

    assert z["grant-42"] >= 10
    assert max(v for r, v in z.items() if r != "grant-42") < 5
    assert false_accusation_bound(10, recipients=10_000) < 1e-17


def test_the_average_of_two_copies_names_both(weights):
    a, b = mark(weights, key("grant-7")), mark(weights, key("grant-8"))
    suspect = (a.astype(np.float32) + b.astype(np.float32)) / 2

    z = scores(weights, suspect)

    assert z["grant-7"] >= 10 and z["grant-8"] >= 10
    assert max(v for r, v in z.items() if r not in ("grant-7", "grant-8")) < 5


def test_an_unmarked_copy_accuses_nobody(weights):
    z = scores(weights, weights.astype(np.float32))
    assert max(z.values()) == 0.0


@pytest.fixture(scope="module")
def state(tiny_ckpt):
    """The tiny checkpoint's weights as Meta ships them (float16), by name."""
    loaded = torch.load(tiny_ckpt / "consolidated.00.pth", weights_only=True)
    return {name: tensor.numpy() for name, tensor in loaded.items() if tensor.dtype == torch.float16}


def copy_keys(recipient: str):
    return lambda name: None if name.endswith("norm.weight") else tensor_key(MASTER, recipient, "c.pth", name)


@pytest.mark.parametrize("copy", ["exact", "bfloat16", "int8", "average"])
def test_identify_ranks_a_hundred_grants_and_accuses_only_the_leakers(state, copy):
    from inference.llama.fingerprint import identify

    marked = {r: {n: mark(w, k) if (k := copy_keys(r)(n)) else w for n, w in state.items()} for r in ("g-1", "g-2")}
    if copy == "exact":
        suspect, leakers = marked["g-1"], {"g-1"}
    elif copy == "bfloat16":
        suspect = {n: torch.from_numpy(w).to(torch.bfloat16).float().numpy() for n, w in marked["g-1"].items()}
        leakers = {"g-1"}
    elif copy == "int8":
        suspect = {}
        for n, w in marked["g-1"].items():
            rows = w.astype(np.float32).reshape(w.shape[0], -1)
            step = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-8) / 127
            suspect[n] = (np.round(rows / step) * step).reshape(w.shape)
        leakers = {"g-1"}
    else:
        suspect = {n: (marked["g-1"][n].astype(np.float32) + marked["g-2"][n].astype(np.float32)) / 2 for n in state}
        leakers = {"g-1", "g-2"}

    result = identify(state, suspect, {f"g-{i}": copy_keys(f"g-{i}") for i in range(1, 101)})

    assert set(result.accused) == leakers, result.candidates[:4]
    assert all(z >= 10 for c, z in result.candidates if c in leakers)
    assert all(z < 5 for c, z in result.candidates if c not in leakers)
    matrices = [name for name, w in state.items() if w.ndim == 2]  # the norms' vectors carry no marks
    assert result.candidates[0][0] in leakers and result.tensors_compared == len(matrices)
    assert result.false_positive_bound == pytest.approx(100 * np.exp(-50))
