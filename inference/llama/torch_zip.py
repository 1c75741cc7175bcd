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
"""

from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
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


class MarkedFile:
    """A recipient's copy of a torch.save file: float16 tensors marked with ``key_of(tensor name)``
    (None leaves a tensor alone), every other byte the original's. ``read(start, length)`` gives
    any range; the same bytes whichever ranges they are read in."""

    def __init__(self, path: str | Path, layout: Layout, key_of: Callable[[str], bytes | None]):
        self.path, self.layout = Path(path), layout
        self.marked = [
            (span, key) for span in layout.tensors
            if span.dtype == "float16" and (key := key_of(span.name)) is not None
        ]  # fmt: skip
        self._crcs: dict[str, int] | None = None

    def _marked_in(self, entry: Entry, start: int, stop: int, data: bytearray) -> None:
        """Mark data, the entry's bytes start .. stop (relative to its data), in place."""
        for span, key in self.marked:
            if self.layout.entries[span.entry] is not entry:
                continue
            first, last = span.byte_range
            lo, hi = max(start, first), min(stop, last)
            if lo >= hi:
                continue
            # Whole blocks of the tensor around the range: marking is defined block by block.
            block_bytes = fingerprint.BLOCK * span.element_size
            element0 = (lo - first) // block_bytes * fingerprint.BLOCK
            window_start = first + element0 * span.element_size
            window_stop = min(last, first + -(-(hi - first) // block_bytes) * block_bytes)
            with open(self.path, "rb") as raw:
                raw.seek(entry.data_offset + window_start)
                window = np.frombuffer(raw.read(window_stop - window_start), dtype="<f2")
            marked = fingerprint.mark(window, key, start=element0).tobytes()
            data[lo - start : hi - start] = marked[lo - window_start : hi - window_start]

    def crcs(self) -> dict[str, int]:
        """Each entry's CRC-32 in this copy (marked entries computed once, a MiB at a time)."""
        if self._crcs is None:
            crcs = {name: entry.crc for name, entry in self.layout.entries.items()}
            for name in {span.entry for span, _ in self.marked}:
                entry, crc = self.layout.entries[name], 0
                for at in range(0, entry.size, 1 << 20):
                    crc = zlib.crc32(self._entry_bytes(entry, at, min(entry.size, at + (1 << 20))), crc)
                crcs[name] = crc
            self._crcs = crcs
        return self._crcs

    def _entry_bytes(self, entry: Entry, start: int, stop: int) -> bytes:
        with open(self.path, "rb") as raw:
            raw.seek(entry.data_offset + start)
            data = bytearray(raw.read(stop - start))
        self._marked_in(entry, start, stop, data)
        return bytes(data)

    def read(self, start: int, length: int) -> bytes:
        stop = min(self.layout.size, start + length)
        if start >= stop:
            return b""
        with open(self.path, "rb") as raw:
            raw.seek(start)
            data = bytearray(raw.read(stop - start))
        marked_entries = {span.entry for span, _ in self.marked}
        for name in marked_entries:
            entry = self.layout.entries[name]
            lo, hi = max(start, entry.data_offset), min(stop, entry.data_offset + entry.size)
            if lo < hi:
                part = bytearray(data[lo - start : hi - start])
                self._marked_in(entry, lo - entry.data_offset, hi - entry.data_offset, part)
                data[lo - start : hi - start] = part
            # The CRC in the descriptor (after its signature) and in the central directory.
            crc = struct.pack("<I", self.crcs()[name])
            for field_at in (entry.descriptor_offset + 4, self.layout.crc_fields[name]):
                lo, hi = max(start, field_at), min(stop, field_at + 4)
                if lo < hi:
                    data[lo - start : hi - start] = crc[lo - field_at : hi - field_at]
        return bytes(data)
