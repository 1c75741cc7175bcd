"""Per-recipient fingerprints in float16 weights: a keyed, imperceptible move of some weights by a
few units in the last place (ulp), and the statistic that names whose copy a suspect file is
(issue 17; this module is its arithmetic, Django-free).

Marking. A tensor's elements are cut into PAGEs of 16,384 (32 KiB of float16). For each recipient,
file and tensor (``tensor_key``) a keyed draw marks one page in PAGE_SHARE (``pages_marked``); in a
marked page each eligible weight's magnitude moves by +-AMPLITUDE_ULP ulp, away from or towards
zero, the sign from a keyed stream seekable by element (``signs``). So a served copy is the
original's bytes but for one page in sixteen, which the gateway generates while the kernel sends
the rest (sendfile), and any byte range can be made alone (Range requests). One page in 16 at 8
ulp carries the same perturbation energy as every weight at 2 ulp (8^2 / 16 = 2^2). Left alone:
zeros, subnormals, values near the largest finite one, and the largest magnitude of each
BLOCK-weight block, so 8- and 4-bit block quantizers choose the same scales for every copy.

Identification. With the original W and a suspect S (any dtype, read as float64), d = S - W and a
template t = sign(W) * AMPLITUDE_ULP * ulp(W) from W alone; the matched statistic is
u = d * t / (t^2 + sigma^2), sigma^2 the suspect's rounding noise (its grid^2 / 12: 0 for an exact
float16 copy, bfloat16's grid after a cast, the quantization step after int8). For recipient r,
over the weights of r's marked pages, z_r = sum(u * s_r) / ||u||. u depends on no key, and each s_r
is a fresh +-1 stream independent of which pages were drawn, so for anyone whose mark is not in S,
P(z_r >= x) <= exp(-x^2 / 2) (Hoeffding), whatever was done to the file; the true recipient's z
grows with the square root of the number of weights.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

AMPLITUDE_ULP = 8
PAGE_SHARE = 16  # one page in 16 is marked
PAGE = 16384  # elements per page (32 KiB of float16): the unit that is marked or not, and the sign stream's unit
BLOCK = 32  # weights per quantization block; each block's largest magnitude is never moved
_PAGE_DRAW_BELOW = (1 << 64) // PAGE_SHARE
_MAGNITUDE = 0x7FFF
_SMALLEST_NORMAL = 0x0400  # float16 magnitude bits of 2^-14
_LARGEST_FINITE = 0x7BFF


def tensor_key(master_key: bytes, recipient: str, file: str, tensor: str) -> bytes:
    """The key of one tensor of one file of one recipient's copy: HMAC-SHA256 of the three names
    under the master key (a recipient never learns another's key or the master key)."""
    message = "\x1f".join((recipient, file, tensor)).encode()
    return hmac.new(master_key, message, hashlib.sha256).digest()


def tensor_marked(name: str, shape: tuple[int, ...]) -> bool:
    """Whether a checkpoint's tensor carries marks: the weight matrices (and embeddings), not the
    norms' vectors, whose few thousand values are replicated in every shard."""
    return len(shape) >= 2


def pages_count(numel: int) -> int:
    return -(-numel // PAGE)


def pages_marked(key: bytes, n_pages: int, first: int = 0, count: int | None = None) -> np.ndarray:
    """Whether pages first .. first + count of the key's tensor of n_pages pages are marked
    (bool): a Philox stream keyed by the key's last 128 bits, one draw per page, marked below
    2^64 / PAGE_SHARE; and one page chosen by a hash of the key always, so a small tensor (the
    demo's hold one page each) is never left unmarked."""
    count = n_pages - first if count is None else count
    if first < 0 or count < 0 or first + count > n_pages:
        raise ValueError("the pages asked for must lie within the tensor's.")
    draws = np.random.Philox(key=int.from_bytes(key[16:32], "little")).random_raw(first + count)[first:]
    chosen = draws < np.uint64(_PAGE_DRAW_BELOW)
    always = int.from_bytes(hashlib.sha256(key + b"\x00always").digest()[:8], "little") % n_pages if n_pages else 0
    if first <= always < first + count:
        chosen[always - first] = True
    return chosen


def _page_signs(philox_key: int, page: int) -> np.ndarray:
    raw = np.random.Philox(key=philox_key, counter=page << 64).random_raw(PAGE // 64)
    return np.unpackbits(raw.astype("<u8").view(np.uint8), bitorder="little").astype(np.int8) * 2 - 1


def signs(key: bytes, start: int, count: int) -> np.ndarray:
    """Elements start .. start + count of the key's +-1 stream (int8): the same values whichever
    range they are asked in. Page p comes from Philox with the key's first 128 bits and counter
    p << 64, so pages never share counter values."""
    if start < 0 or count < 0:
        raise ValueError("start and count must be 0 or more.")
    philox_key = int.from_bytes(key[:16], "little")
    first, last = start // PAGE, (start + count - 1) // PAGE if count else start // PAGE - 1
    parts = [_page_signs(philox_key, page) for page in range(first, last + 1)]
    stream = np.concatenate(parts) if parts else np.empty(0, np.int8)
    offset = start - first * PAGE
    return stream[offset : offset + count]


def eligible(weights: np.ndarray) -> np.ndarray:
    """Which float16 weights are marked (a bool array of their shape), from the weights alone.

    ``weights`` is a whole tensor, or a stretch of one that starts at a multiple of BLOCK elements
    (blocks are counted from the tensor's first element) and ends at one or at the tensor's end."""
    bits = np.ascontiguousarray(weights, dtype=np.float16).reshape(-1).view(np.uint16)
    magnitude = bits & np.uint16(_MAGNITUDE)
    count = len(magnitude)
    pad = -count % BLOCK  # a last, shorter block is a block too
    blocks = (np.concatenate([magnitude, np.zeros(pad, np.uint16)]) if pad else magnitude).reshape(-1, BLOCK)
    # No weight may reach its block's largest magnitude (which stays), so a block quantizer's scale
    # is the same in every copy; nor leave the normal, finite range.
    ceiling = np.maximum(blocks.max(axis=1), AMPLITUDE_ULP) - np.uint16(AMPLITUDE_ULP)
    ok = (blocks <= ceiling[:, None]) & (blocks >= _SMALLEST_NORMAL + AMPLITUDE_ULP)
    ok &= blocks <= _LARGEST_FINITE - AMPLITUDE_ULP
    return ok.reshape(-1)[:count].reshape(np.shape(weights))


def _mark_span(bits: np.ndarray, key: bytes, start: int) -> np.ndarray:
    """Every eligible weight of a stretch moved by its sign (the stretch's own pages all marked)."""
    original = bits.view(np.float16)
    # Magnitudes fit int16 (the sign bit is apart), and an eligible one stays normal and finite.
    move = signs(key, start, len(bits)).astype(np.int16) * np.int16(AMPLITUDE_ULP)
    move *= eligible(original)
    magnitude = (bits & np.uint16(_MAGNITUDE)).view(np.int16) + move
    return (bits & np.uint16(~_MAGNITUDE & 0xFFFF)) | magnitude.view(np.uint16)


def mark_page(weights: np.ndarray, key: bytes, page: int) -> np.ndarray:
    """One page of a tensor (its PAGE elements, fewer for a last page) as the key marks it, for a
    caller that already knows the key marks this page (``pages_marked``)."""
    bits = np.ascontiguousarray(weights, dtype=np.float16).reshape(-1).view(np.uint16)
    return _mark_span(bits, key, page * PAGE).view(np.float16)


def mark(weights: np.ndarray, key: bytes, start: int = 0, numel: int | None = None) -> np.ndarray:
    """A marked copy of float16 weights that start at element ``start`` of their tensor of
    ``numel`` elements (a multiple of BLOCK; the stretch ends at a multiple of BLOCK or at the
    tensor's end, which it is taken to end at when numel is not given): in the key's marked
    pages, each eligible weight's magnitude moved by +-AMPLITUDE_ULP ulp."""
    if start % BLOCK:
        raise ValueError(f"a marked stretch starts at a multiple of {BLOCK} elements of its tensor.")
    bits = np.ascontiguousarray(weights, dtype=np.float16).reshape(-1).view(np.uint16)
    marked = bits.copy()
    numel = start + len(bits) if numel is None else numel
    if len(bits):
        first = start // PAGE
        chosen = pages_marked(key, pages_count(numel), first, (start + len(bits) - 1) // PAGE - first + 1)
        for page in np.flatnonzero(chosen) + first:
            lo, hi = max(page * PAGE, start) - start, min((page + 1) * PAGE - start, len(bits))
            marked[lo:hi] = _mark_span(bits[lo:hi], key, start + lo)
    return marked.view(np.float16).reshape(np.shape(weights))


def template(weights: np.ndarray) -> np.ndarray:
    """t: what a + sign moves each weight by, in value (float64), 0 where nothing is marked."""
    original = np.ascontiguousarray(weights, dtype=np.float16).reshape(-1)
    bits = original.view(np.uint16)
    magnitude = (bits & _MAGNITUDE).astype(np.int32)
    moved = ((bits & ~np.uint16(_MAGNITUDE)) | (magnitude + AMPLITUDE_ULP).astype(np.uint16)).view(np.float16)
    t = moved.astype(np.float64) - original.astype(np.float64)
    return np.where(eligible(original), t, 0.0)


def bfloat16_noise(weights: np.ndarray) -> np.ndarray:
    """sigma^2 of a bfloat16 cast of these weights: its grid (8 bits of precision) squared / 12."""
    w = np.abs(np.asarray(weights, dtype=np.float64)).reshape(-1)
    exponent = np.floor(np.log2(np.where(w > 0, w, 1.0)))
    grid = np.exp2(exponent - 7)
    return grid**2 / 12


@dataclass
class Evidence:
    """One tensor's matched statistic u (float64, zero where nothing is marked) for scoring keys."""

    u: np.ndarray

    @classmethod
    def from_suspect(
        cls, original: np.ndarray, suspect: np.ndarray, noise: np.ndarray | float = 0.0, t: np.ndarray | None = None
    ) -> Evidence:
        """t: the original's template, when the caller has it already."""
        t = template(original) if t is None else t
        d = np.asarray(suspect, dtype=np.float64).reshape(-1) - np.asarray(original, dtype=np.float64).reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = np.where(t != 0, d * t / (t * t + noise), 0.0)
        return cls(u=np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0))


def _key_sums(item: Evidence, key: bytes) -> tuple[float, float]:
    """sum(u * s) and sum(u^2) over the weights of the pages the key marked."""
    total, norm = 0.0, 0.0
    philox_key = int.from_bytes(key[:16], "little")
    for page in np.flatnonzero(pages_marked(key, pages_count(len(item.u)))):
        u = item.u[page * PAGE : (page + 1) * PAGE]
        total += float(u @ _page_signs(philox_key, int(page))[: len(u)])
        norm += float(u @ u)
    return total, norm


def z_score(evidence: list[tuple[Evidence, bytes]]) -> float:
    """z of one recipient over several tensors: each tensor's evidence with that recipient's key,
    over the weights of the pages the key marked."""
    total, norm = 0.0, 0.0
    for item, key in evidence:
        item_total, item_norm = _key_sums(item, key)
        total, norm = total + item_total, norm + item_norm
    return float(total / np.sqrt(norm)) if norm > 0 else 0.0


def false_accusation_bound(z: float, recipients: int = 1) -> float:
    """The chance that any of ``recipients`` people whose mark is not in the file scores z or
    more: recipients * exp(-z^2 / 2) (Hoeffding, with a union bound), at most 1."""
    return min(1.0, recipients * float(np.exp(-(z**2) / 2)))


def noise_estimate(original: np.ndarray, suspect: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """sigma^2 per weight, estimated from the suspect itself, one value per row of the matrix (per
    output channel, as per-channel quantizers work): the mean over the row of d^2 less the marks'
    expected share, t^2 / PAGE_SHARE, at least 0. An exact copy gives 0; a cast or a quantization
    gives about its grid^2 / 12. Copies averaged carry less than one copy's marks and read as
    exact when nothing else was done."""
    w = np.asarray(original, dtype=np.float16)
    rows = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
    t = (template(rows) if t is None else np.asarray(t)).reshape(rows.shape)
    d = np.asarray(suspect, dtype=np.float64).reshape(rows.shape) - rows.astype(np.float64)
    marked = t != 0
    counts = np.maximum(marked.sum(axis=1, keepdims=True), 1)
    excess = np.where(marked, d * d - t * t / PAGE_SHARE, 0.0).sum(axis=1, keepdims=True) / counts
    return np.broadcast_to(np.maximum(excess, 0.0), rows.shape).reshape(-1)


@dataclass
class Identification:
    """Every candidate's z, highest first; who is accused (z >= threshold); and the chance that any
    candidate whose mark is not in the suspect would score the threshold or more."""

    candidates: list[tuple[str, float]]
    threshold: float
    accused: list[str]
    false_positive_bound: float
    tensors_compared: int


def identify(
    original: dict[str, np.ndarray],
    suspect: dict[str, np.ndarray],
    keys: dict[str, Callable[[str], bytes | None]],
    *,
    threshold: float = 10.0,
) -> Identification:
    """Score a suspect state dict against every candidate: ``keys`` maps a candidate (a grant) to
    the key of each tensor of its copy (None: that tensor was not marked). Tensors are compared
    where the suspect has one of the same name and number of elements; the original's are float16."""
    # Tensor by tensor, each candidate's sums gathered and the tensor's evidence dropped: memory
    # stays at one tensor's, whatever the model's size.
    sums = {candidate: [0.0, 0.0] for candidate in keys}
    compared = 0
    for name, weights in original.items():
        other = suspect.get(name)
        if other is None or np.size(other) != np.size(weights) or np.asarray(weights).dtype != np.float16:
            continue
        if not tensor_marked(name, np.shape(weights)):
            continue
        other = np.asarray(other, dtype=np.float64).reshape(np.shape(weights))
        t = template(weights)  # once per tensor, for the noise estimate and the statistic
        item = Evidence.from_suspect(weights, other, noise_estimate(weights, other, t), t)
        compared += 1
        for candidate, key_of in keys.items():
            if (key := key_of(name)) is not None:
                total, norm = _key_sums(item, key)
                sums[candidate][0] += total
                sums[candidate][1] += norm
        del item, other, t
    candidates = [
        (candidate, float(total / np.sqrt(norm)) if norm > 0 else 0.0) for candidate, (total, norm) in sums.items()
    ]
    candidates.sort(key=lambda pair: pair[1], reverse=True)
    return Identification(
        candidates=candidates,
        threshold=threshold,
        accused=[candidate for candidate, z in candidates if z >= threshold],
        false_positive_bound=false_accusation_bound(threshold, max(1, len(candidates))),
        tensors_compared=compared,
    )
