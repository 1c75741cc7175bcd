"""Where each tensor's bytes lie in a `torch.save` file, and a recipient's marked copy of the file
served from the original, any byte range alone, with no copy stored (issue 17; Django-free).

A `torch.save` file is a zip archive of stored (uncompressed) entries: ``<name>/data.pkl`` (the
pickled structure) and one ``<name>/data/<key>`` per storage, holding its raw little-endian
elements. Each entry has flag bit 3: its CRC-32 and sizes are in a data descriptor after its data
and in the central directory, not in its local header. So a marked copy has the original's length
and every byte of it but the marked weights, the descriptors' CRCs and the central directory's
CRCs; those follow from the marked data, which ``MarkedFile`` computes once.

The layout is read without loading a tensor: the pickle is read by an unpickler that knows only
the few names a state dict of tensors uses, and builds records instead of tensors.

A ``.safetensors`` file (transformers' layout, issue 18) has a layout too
(``safetensors_layout``): its JSON header gives each tensor's span, and with no checksum inside,
its marked copy differs from the original in the marked pages alone.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from inference.llama import fingerprint

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature ... name length, extra length
_DESCRIPTOR_SIGNATURE = 0x08074B50
_CENTRAL_SIGNATURE = 0x02014B50
_CENTRAL_CRC_AT = 16  # the CRC-32 field's offset in a central directory header
_STORAGE_DTYPES = {
    "HalfStorage": ("float16", 2), "BFloat16Storage": ("bfloat16", 2), "FloatStorage": ("float32", 4),
    "DoubleStorage": ("float64", 8), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
}  # fmt: skip


class LayoutError(ValueError):
    """The file is not a torch.save archive this module can read."""


@dataclass(frozen=True)
class Entry:
    name: str
    header_offset: int
    data_offset: int
    size: int
    crc: int
    descriptor_offset: int  # right after the data
    descriptor_size: int  # 16, or 24 with zip64 sizes


@dataclass(frozen=True)
class TensorSpan:
    """One tensor of the state dict: its storage's entry, and which contiguous elements are its."""

    name: str
    entry: str
    dtype: str
    element_size: int
    storage_offset: int  # in elements
    numel: int
    shape: tuple[int, ...]

    @property
    def byte_range(self) -> tuple[int, int]:
        """Its bytes, relative to the entry's data."""
        start = self.storage_offset * self.element_size
        return start, start + self.numel * self.element_size


@dataclass
class Layout:
    size: int
    entries: dict[str, Entry]
    tensors: list[TensorSpan]
    central_directory_offset: int
    crc_fields: dict[str, int] = field(default_factory=dict)  # entry -> file offset of its central CRC
    kind: str = "torch"  # "torch" (a zip archive, CRCs to patch) or "safetensors" (no checksums inside)


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    element_size: int
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name: str):
        self.dtype, self.element_size = _STORAGE_DTYPES[name]


class _LayoutUnpickler(pickle.Unpickler):
    """Reads data.pkl into records: names outside a plain state dict of tensors are refused."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise LayoutError(f"data.pkl names {module}.{name}, which a state dict of tensors does not use.")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise LayoutError(f"unknown persistent id {kind!r} in data.pkl.")
        return _Storage(str(key), storage_type.dtype, storage_type.element_size, int(numel))


def _contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for dim, step in zip(reversed(size), reversed(stride), strict=True):
        if dim != 1 and step != expected:
            return False
        expected *= dim
    return True


def checkpoint_layout(path: str | Path) -> Layout:
    """Each entry's data and descriptor offsets and each contiguous tensor's span, from the zip's
    central directory, the local headers and data.pkl."""
    path = Path(path)
    with open(path, "rb") as raw, zipfile.ZipFile(raw) as archive:
        infos = archive.infolist()
        entries = {}
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or not info.flag_bits & 0x08:
                raise LayoutError(f"{info.filename} is not stored with a data descriptor, as torch.save writes.")
            raw.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            data_offset = info.header_offset + _LOCAL_HEADER.size + header[9] + header[10]
            descriptor_offset = data_offset + info.compress_size
            raw.seek(descriptor_offset)
            signature = struct.unpack("<I", raw.read(4))[0]
            if signature != _DESCRIPTOR_SIGNATURE:
                raise LayoutError(f"{info.filename} has no data descriptor signature.")
            descriptor_size = 24 if info.compress_size >= 0xFFFFFFFF or info.file_size >= 0xFFFFFFFF else 16
            entries[info.filename] = Entry(
                info.filename, info.header_offset, data_offset, info.compress_size, info.CRC, descriptor_offset,
                descriptor_size,
            )  # fmt: skip
        pickle_name = next((name for name in entries if name.endswith("/data.pkl")), None)
        if pickle_name is None:
            raise LayoutError("no data.pkl: not a torch.save archive.")
        root = pickle_name.removesuffix("data.pkl")
        state = _LayoutUnpickler(archive.open(pickle_name)).load()
        central = archive.start_dir
        raw.seek(central)
        directory = raw.read(path.stat().st_size - central)
    if not isinstance(state, dict):
        raise LayoutError("data.pkl holds no dict of tensors.")
    tensors = []
    for name, value in state.items():
        if isinstance(value, _Tensor) and _contiguous(value.size, value.stride):
            numel = int(np.prod(value.size, dtype=np.int64))
            tensors.append(TensorSpan(
                str(name), f"{root}data/{value.storage.key}", value.storage.dtype, value.storage.element_size,
                value.offset, numel, value.size,
            ))  # fmt: skip
    crc_fields, at = {}, 0
    while at + 46 <= len(directory) and struct.unpack_from("<I", directory, at)[0] == _CENTRAL_SIGNATURE:
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", directory, at + 28)
        name = directory[at + 46 : at + 46 + name_length].decode("utf-8")
        crc_fields[name] = central + at + _CENTRAL_CRC_AT
        at += 46 + name_length + extra_length + comment_length
    return Layout(path.stat().st_size, entries, tensors, central, crc_fields)


def layout_to_json(layout: Layout) -> dict:
    """The layout as plain JSON values, to store once per published file."""
    return {
        "size": layout.size,
        "central_directory_offset": layout.central_directory_offset,
        "entries": [
            [e.name, e.header_offset, e.data_offset, e.size, e.crc, e.descriptor_offset, e.descriptor_size]
            for e in layout.entries.values()
        ],
        "tensors": [
            [t.name, t.entry, t.dtype, t.element_size, t.storage_offset, t.numel, list(t.shape)] for t in layout.tensors
        ],
        "crc_fields": layout.crc_fields,
        "kind": layout.kind,
    }


def layout_from_json(value: dict) -> Layout:
    try:
        entries = {row[0]: Entry(*row) for row in value["entries"]}
        tensors = [TensorSpan(*row[:6], tuple(row[6])) for row in value["tensors"]]
        return Layout(
            value["size"], entries, tensors, value["central_directory_offset"], dict(value["crc_fields"]),
            value.get("kind", "torch"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise LayoutError(f"a stored layout cannot be read: {exc}") from exc


_SAFETENSORS_DTYPES = {
    "F16": ("float16", 2), "BF16": ("bfloat16", 2), "F32": ("float32", 4), "F64": ("float64", 8),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}  # fmt: skip
SAFETENSORS_DATA = "data"  # a safetensors file's one "entry": the bytes after its header


def safetensors_layout(path: str | Path) -> Layout:
    """Where each tensor lies in a .safetensors file: an 8-byte little-endian header length, a
    JSON header of dtype, shape and data offsets (relative to the data after the header), then
    the data. The format holds no checksum, so a marked copy differs from the original only in
    its marked pages."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as raw:
        head = raw.read(8)
        if len(head) != 8:
            raise LayoutError("too short for a safetensors file.")
        header_size = struct.unpack("<Q", head)[0]
        if header_size > min(size - 8, 100 << 20):
            raise LayoutError("the header length runs past the file: not a safetensors file.")
        try:
            header = json.loads(raw.read(header_size))
        except (UnicodeDecodeError, ValueError) as exc:
            raise LayoutError(f"the header is not JSON ({exc}): not a safetensors file.") from exc
    if not isinstance(header, dict):
        raise LayoutError("the header is not a JSON object: not a safetensors file.")
    data_offset = 8 + header_size
    entry = Entry(SAFETENSORS_DATA, 0, data_offset, size - data_offset, 0, size, 0)
    tensors = []
    for name, value in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, element_size = _SAFETENSORS_DTYPES[value["dtype"]]
            offsets, shape = value["data_offsets"], value["shape"]
        except (KeyError, TypeError) as exc:
            raise LayoutError(f"the header's entry for {name!r} is not a tensor's: {exc}") from exc
        exact = all(type(x) is int for x in [*offsets, *shape]) and len(offsets) == 2
        if not exact or any(x < 0 for x in shape):
            raise LayoutError(f"{name!r} has offsets or a shape that are not whole numbers of 0 or more.")
        begin, end = offsets
        numel = math.prod(shape)  # Python integers: no overflow
        if not 0 <= begin <= end <= entry.size or begin % element_size or end - begin != numel * element_size:
            raise LayoutError(f"{name!r}'s data offsets do not fit its dtype and shape, or run past the file.")
        tensors.append(TensorSpan(str(name), SAFETENSORS_DATA, dtype, element_size, begin // element_size, numel,
                                  tuple(shape)))  # fmt: skip
    at = 0
    for span in sorted(tensors, key=lambda span: span.storage_offset * span.element_size):
        start, stop = span.byte_range
        if start < at:
            raise LayoutError(f"{span.name!r} overlaps another tensor's data.")
        at = stop
    return Layout(size, {SAFETENSORS_DATA: entry}, tensors, size, {}, "safetensors")


# CRC-32 arithmetic (zlib's polynomial, reflected), for the CRC of a marked entry from the
# original's CRC and the marked pages alone: for equal-length data, crc(M xor D) = crc(M) xor
# crc(D) xor crc(zeros), and the register contribution of D, lin(D) = crc(D) xor crc(zeros), is
# linear: lin(X + Y) = shift(lin(X), len(Y)) xor lin(Y), where shift multiplies by x^(8 len(Y))
# modulo the polynomial (what zlib's crc32_combine does; Python's zlib does not expose it).
_CRC_POLY = 0xEDB88320


def _crc_multiply(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial, both in the reflected bit order."""
    product, bit = 0, 1 << 31
    while bit and a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return product


def _x_to_2_to_n() -> list[int]:
    powers, p = [], 1 << 30  # x^1
    for _ in range(64):
        powers.append(p)
        p = _crc_multiply(p, p)
    return powers


_X_POWERS = _x_to_2_to_n()  # x^(2^k) for k = 0..63


@lru_cache(maxsize=4096)
def _x_to_8n(n_bytes: int) -> int:
    """x^(8 n_bytes) modulo the polynomial: the shift over n_bytes zero bytes."""
    p, k, n = 1 << 31, 3, n_bytes  # x^0
    while n:
        if n & 1:
            p = _crc_multiply(_X_POWERS[k], p)
        n >>= 1
        k += 1
    return p


def crc32_shift(crc: int, n_bytes: int) -> int:
    """A CRC register moved past n_bytes zero bytes."""
    return _crc_multiply(_x_to_8n(n_bytes), crc) if crc else 0


@lru_cache(maxsize=64)
def _zeros_crc(length: int) -> int:
    return zlib.crc32(bytes(length))


@dataclass(frozen=True)
class _Patch:
    """Bytes of the copy that differ from the original's: a marked page, or an entry's CRC field."""

    start: int  # file offsets, stop excluded
    stop: int
    entry: str
    span: TensorSpan | None = None  # a page of this tensor, marked with key
    key: bytes | None = None
    page: int = 0


def _local_reader(path: Path) -> Callable[[int, int], bytes]:
    def read(start: int, length: int) -> bytes:
        with open(path, "rb") as raw:
            return os.pread(raw.fileno(), length, start)

    return read


def layout_markable(layout: Layout) -> bool:
    """Whether a recipient's copy of this file carries marks: it holds a float16 weight matrix."""
    return any(span.dtype == "float16" and fingerprint.tensor_marked(span.name, span.shape) for span in layout.tensors)


class MarkedFile:
    """A recipient's copy of a torch.save file: in each float16 tensor that ``key_of(tensor name)``
    gives a key (None leaves a tensor alone), the pages that key marks; every other byte the
    original's but the marked entries' CRCs. ``source`` is the original's path or a
    ``read(start, length)`` function. ``pieces`` tells a server which bytes it may send straight
    from the original and hands it the others; ``read`` gives any range's bytes; the same bytes
    whichever ranges they are asked in. ``crcs`` (each marked entry's CRC in this copy) may be
    given when known, else it is computed from the marked pages alone when first needed."""

    def __init__(
        self,
        layout: Layout,
        key_of: Callable[[str], bytes | None],
        source: str | Path | Callable[[int, int], bytes],
        crcs: dict[str, int] | None = None,
    ):
        self.layout = layout
        self._read = source if callable(source) else _local_reader(Path(source))
        patches = []
        taken: dict[str, list[tuple[int, int]]] = {}  # each entry's byte ranges already marked
        for span in layout.tensors:
            if span.dtype != "float16" or not fingerprint.tensor_marked(span.name, span.shape):
                continue
            first_byte, last_byte = span.byte_range
            if any(first_byte < stop and start < last_byte for start, stop in taken.get(span.entry, ())):
                continue  # shares its storage with a tensor already marked (tied weights, a view)
            if (key := key_of(span.name)) is None:
                continue
            taken.setdefault(span.entry, []).append((first_byte, last_byte))
            entry = layout.entries[span.entry]
            base = entry.data_offset + span.byte_range[0]
            for page in np.flatnonzero(fingerprint.pages_marked(key, fingerprint.pages_count(span.numel))):
                first = int(page) * fingerprint.PAGE
                last = min(first + fingerprint.PAGE, span.numel)
                patches.append(_Patch(base + first * 2, base + last * 2, span.entry, span, key, int(page)))
        # A zip's entries carry CRC-32s (in the data descriptor and the central directory) that
        # change with their data; a safetensors file has none.
        self.marked_entries = sorted({patch.entry for patch in patches}) if layout.kind == "torch" else []
        for name in self.marked_entries:
            entry = layout.entries[name]
            patches.append(_Patch(entry.descriptor_offset + 4, entry.descriptor_offset + 8, name))
            patches.append(_Patch(layout.crc_fields[name], layout.crc_fields[name] + 4, name))
        self._patches = sorted(patches, key=lambda patch: patch.start)
        self._starts = [patch.start for patch in self._patches]
        self._crcs = dict(crcs) if crcs is not None else None

    @property
    def size(self) -> int:
        return self.layout.size

    @property
    def marked_bytes(self) -> int:
        return sum(patch.stop - patch.start for patch in self._patches if patch.span is not None)

    def _page(self, patch: _Patch, original: bytes | None = None, read=None) -> bytes:
        if original is None:
            original = (read or self._read)(patch.start, patch.stop - patch.start)
        return fingerprint.mark_page(np.frombuffer(original, dtype="<f2"), patch.key, patch.page).tobytes()

    def _patch_bytes(self, patch: _Patch, read=None) -> bytes:
        if patch.span is not None:
            return self._page(patch, read=read)
        return struct.pack("<I", self.crcs()[patch.entry])

    def crcs(self) -> dict[str, int]:
        """Each marked entry's CRC-32 in this copy, from the original's CRC and the marked pages
        (read and marked once each)."""
        if self._crcs is None:
            crcs = {}
            for name in self.marked_entries:
                entry = self.layout.entries[name]
                register, upto = 0, 0  # lin() of the copy's changes in the entry's first `upto` bytes
                for patch in self._patches:
                    if patch.entry != name or patch.span is None:
                        continue
                    original = self._read(patch.start, patch.stop - patch.start)
                    changed = np.frombuffer(self._page(patch, original), np.uint8) ^ np.frombuffer(original, np.uint8)
                    page_register = zlib.crc32(changed.tobytes()) ^ _zeros_crc(len(original))
                    stop = patch.stop - entry.data_offset
                    register = crc32_shift(register, stop - upto) ^ page_register
                    upto = stop
                crcs[name] = entry.crc ^ crc32_shift(register, entry.size - upto)
            self._crcs = crcs
        return self._crcs

    def crcs_known(self, crcs: dict[str, int]) -> None:
        """Take the copy's CRCs as recorded elsewhere, so they are not computed again."""
        if self._crcs is None:
            self._crcs = {name: int(value) for name, value in crcs.items()}

    def crcs_needed(self, start: int, stop: int) -> bool:
        """Whether bytes start .. stop include a CRC this copy changes."""
        return self._crcs is None and any(
            patch.span is None and patch.start < stop and patch.stop > start for patch in self._patches
        )

    def pieces(self, start: int, stop: int, read=None) -> Iterator[tuple[int, int] | bytes]:
        """The copy's bytes start .. stop in order, as runs ``(first, stop)`` that are the
        original's bytes there and ``bytes`` made for the copy. ``read``: how to read the
        original's marked pages, when the caller has the file open already."""
        stop = min(stop, self.layout.size)
        at = start
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        for patch in self._patches[index:]:
            if patch.start >= stop:
                break
            if patch.stop <= at:
                continue
            if patch.start > at:
                yield (at, patch.start)
                at = patch.start
            hi = min(stop, patch.stop)
            yield self._patch_bytes(patch, read)[at - patch.start : hi - patch.start]
            at = hi
        if at < stop:
            yield (at, stop)

    def patched(self, start: int, original: bytes) -> bytes:
        """The copy's bytes where ``original`` holds the original's from ``start``: one read of
        the original serves a window (what a server reading from S3 wants); only a marked page cut
        by the window's edge is read again whole."""
        stop = start + len(original)
        out = None
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        for patch in self._patches[index:]:
            if patch.start >= stop:
                break
            if patch.stop <= start:
                continue
            if patch.span is not None and patch.start >= start and patch.stop <= stop:
                made = self._page(patch, original[patch.start - start : patch.stop - start])
            else:
                made = self._patch_bytes(patch)
            if out is None:
                out = bytearray(original)
            lo, hi = max(start, patch.start), min(stop, patch.stop)
            out[lo - start : hi - start] = made[lo - patch.start : hi - patch.start]
        return original if out is None else bytes(out)

    def read(self, start: int, length: int) -> bytes:
        length = max(0, min(length, self.layout.size - start))
        return self.patched(start, self._read(start, length)) if length else b""
