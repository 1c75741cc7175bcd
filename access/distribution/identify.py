"""Naming the grant behind a suspect copy of a variant's weights (``fingerprint_identify``, and the
reviewers' page): read the suspect (Meta's or transformers' layout, any float dtype; a folder or
single files), cut it as the original's shards were, score every grant ever issued for the
variant with the key its copies were marked with, and record the identification in the audit log.

Copies of the transformers-layout files (hf/, issue 18) carry their own marks, in their own
tensors' coordinates: the suspect is also put in transformers' layout (the q/k rows reordered,
a lossless step) and faced with those files, and each grant is scored apart for each layout, so
a leak of either names its source without one diluting the other.

An exact copy is named by its sha256 alone, from the recorded checksums of every copy served.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from django.db import transaction

from access.audit.services import audit_event_record
from access.catalog.models import ModelVariant
from access.distribution.fingerprints import fingerprint_key_current, fingerprint_master_key, recipient_label
from access.distribution.models import FORMATS, HF_FOLDER, WeightCopy, WeightFile, weight_file_format
from access.distribution.storage import CHUNK_BYTES, StorageError, weight_storage
from access.grants.models import Grant
from inference.llama import fingerprint
from inference.llama.errors import CheckpointError
from inference.llama.hf_convert import META_TO_HF, META_TOP_TO_HF, meta_to_hf_qk
from inference.llama.suspect import shard_slices, suspect_read
from inference.llama.torch_zip import layout_from_json

THRESHOLD = 10.0


class IdentifyError(Exception):
    """The identification cannot run; the message says why and what to do."""


@dataclass
class IdentifyResult:
    variant: str
    threshold: float
    candidates: list[dict]  # {"grant", "user", "z"}, highest z first
    accused: list[int]
    false_positive_bound: float
    tensors_compared: int
    exact_copy_of: list[dict] = field(default_factory=list)  # {"grant", "user", "file"}: sha256 matches
    keys_missing: list[str] = field(default_factory=list)  # copies marked with these were not scored

    def as_json(self) -> dict:
        return {
            "variant": self.variant,
            "threshold": self.threshold,
            "candidates": self.candidates,
            "accused": self.accused,
            "false_positive_bound": self.false_positive_bound,
            "tensors_compared": self.tensors_compared,
            "exact_copy_of": self.exact_copy_of,
            "keys_missing": self.keys_missing,
        }


def _suspect_files(path: Path, confine_to: Path | None) -> list[Path]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".pth", ".bin", ".safetensors"))
    else:
        files = []
    if confine_to is not None:
        outside = [p.name for p in files if not p.resolve().is_relative_to(confine_to)]
        if outside:
            raise IdentifyError(f"{', '.join(outside)} lead outside {confine_to}: copy the files themselves there.")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        while block := raw.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _exact_copies(paths: list[Path], variant: ModelVariant) -> list[dict]:
    found = []
    published = set(WeightFile.objects.filter(variant=variant).values_list("sha256", flat=True))
    for path in paths:
        digest = _sha256(path)
        copies = list(
            WeightCopy.objects.filter(sha256=digest, file__variant=variant).select_related("grant__user", "file")
        )
        # A copy is its grant's alone; bytes that equal the published file, or several grants'
        # copies, name nobody.
        if digest in published or len({copy.grant_id for copy in copies}) != 1:
            continue
        for copy in copies:
            entry = {"grant": copy.grant_id, "user": copy.grant.user.email, "file": copy.file.name}
            if entry not in found:  # one grant's copies of a file under two key ids can be the same bytes
                found.append(entry)
    return found


def _local_copy(storage, weight_file: WeightFile, folder: Path) -> Path:
    if storage.name == "local":
        return storage.path(weight_file.storage_key)
    source = folder / weight_file.name.replace("/", "_")
    storage.get_file(weight_file.storage_key, source)
    return source


def _original_shards(variant: ModelVariant, folder: Path) -> tuple[list[WeightFile], list[dict]]:
    """The variant's published Meta shards (those with a layout, so marked), loaded as float16 tensors."""
    shards = list(
        WeightFile.objects.filter(variant=variant, layout__isnull=False)
        .exclude(name__startswith=HF_FOLDER)
        .order_by("name")
    )
    if not shards:
        raise IdentifyError(
            f"{variant.slug} has no published weight shards that carry fingerprints: publish its weights "
            "(publish_weights) before identifying copies."
        )
    storage, states = weight_storage(), []
    for shard in shards:
        states.append(torch.load(_local_copy(storage, shard, folder), map_location="cpu", weights_only=True, mmap=True))
    return shards, states


_HF_NAME_TO_META = {hf: meta for meta, hf in META_TOP_TO_HF.items()}


def _meta_name(hf_name: str) -> str | None:
    if hf_name in _HF_NAME_TO_META:
        return _HF_NAME_TO_META[hf_name]
    layer, _, rest = hf_name.removeprefix("model.layers.").partition(".")
    if hf_name.startswith("model.layers.") and layer.isdigit():
        meta = next((m for m, h in META_TO_HF.items() if h == rest), None)
        return f"layers.{layer}.{meta}" if meta else None
    return None


class _HfFacing(Mapping):
    """The suspect's tensors in transformers' layout, named "<hf file>:<tensor>", each made when
    asked for (a reordered q/k is a copy: one at a time keeps memory at one tensor's)."""

    def __init__(self, suspect: dict[str, torch.Tensor], where: dict[str, tuple[str, str]], n_heads: int):
        self._suspect, self._where, self._n_heads = suspect, where, n_heads

    def __getitem__(self, key: str) -> np.ndarray:
        meta = self._where[key][1]
        tensor = self._suspect[meta]
        if meta.endswith(("attention.wq.weight", "attention.wk.weight")):
            tensor = meta_to_hf_qk(tensor, self._n_heads)
        return tensor.numpy()

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _hf_originals(variant: ModelVariant, folder: Path, suspect: dict[str, torch.Tensor], n_heads: int):
    """The published transformers-layout shards' float16 matrices (memory-mapped) and the
    suspect's tensors facing them, both keyed "<hf file>:<tensor>"."""
    storage, original, where = weight_storage(), {}, {}
    files = WeightFile.objects.filter(variant=variant, layout__isnull=False, name__startswith=HF_FOLDER)
    for weight_file in files.order_by("name"):
        layout, path = layout_from_json(weight_file.layout), None
        for span in layout.tensors:
            meta = _meta_name(span.name)
            faced = suspect.get(meta) if meta else None
            if span.dtype != "float16" or faced is None or tuple(faced.shape) != tuple(span.shape):
                continue
            path = path or _local_copy(storage, weight_file, folder)
            offset = layout.entries[span.entry].data_offset + span.storage_offset * span.element_size
            name = f"{weight_file.name}:{span.name}"
            original[name] = np.memmap(path, dtype="<f2", mode="r", offset=offset, shape=span.shape)
            where[name] = (weight_file.name, meta)
    return original, _HfFacing(suspect, where, n_heads)


def _n_heads(variant: ModelVariant) -> int:
    params = WeightFile.objects.filter(variant=variant, name="params.json").first()
    if params is None:
        raise IdentifyError(f"{variant.slug} has no published params.json: publish its weights first.")
    try:
        return int(json.loads(weight_storage().read_range(params.storage_key, 0, params.size))["n_heads"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentifyError(f"{variant.slug}'s params.json gives no n_heads: {exc}") from exc


def _candidates(
    variant: ModelVariant, files: list[WeightFile], missing: set[str], formats: tuple[str, ...] = ("meta",)
) -> dict[str, tuple[Grant, Callable[[str], bytes | None]]]:
    """Every grant ever issued for the variant, once per master key its copies were marked with
    (the current key for a grant that never downloaded) and per layout of its copies; ids of keys
    no longer in FINGERPRINT_KEYS are added to ``missing``."""
    key_ids: dict[int, set[str]] = {}
    for grant_id, key_id in WeightCopy.objects.filter(file__in=files).values_list("grant_id", "key_id").distinct():
        key_ids.setdefault(grant_id, set()).add(key_id)
    out = {}
    for grant in Grant.objects.filter(variant=variant).select_related("user").order_by("pk"):
        for key_id in sorted(key_ids.get(grant.pk, {fingerprint_key_current()})):
            try:
                master = fingerprint_master_key(key_id)
            except LookupError:
                missing.add(key_id)  # said in the result: those copies cannot be scored
                continue
            recipient = recipient_label(grant.pk)

            for file_format in formats:

                def key_of(name: str, master=master, recipient=recipient, file_format=file_format) -> bytes | None:
                    file_name, tensor = name.split(":", 1)
                    if weight_file_format(file_name) != file_format:
                        return None  # scored apart: a copy in one layout carries no other layout's marks
                    return fingerprint.tensor_key(master, recipient, file_name, tensor)

                out[f"{grant.pk}:{key_id}:{file_format}"] = (grant, key_of)
    return out


class _Joined(Mapping):
    """Two mappings read as one (their keys do not overlap)."""

    def __init__(self, first: Mapping, second: Mapping):
        self._first, self._second = first, second

    def __getitem__(self, key):
        return self._first[key] if key in self._first else self._second[key]

    def __iter__(self):
        yield from self._first
        yield from self._second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)


def fingerprint_identify(
    *, variant: ModelVariant, suspect: str | Path, actor=None, request=None, confine_to: Path | None = None
) -> IdentifyResult:
    """Score every grant of the variant against the suspect copy; record it in the audit log.
    ``confine_to``: a folder every file read must lie in (the reviewers' page), links resolved."""
    path = Path(suspect)
    paths = _suspect_files(path, confine_to)
    if not paths:
        raise IdentifyError(
            f"{path} holds no checkpoint: give a consolidated.NN.pth, a .safetensors or .bin file, or a folder of them."
        )
    exact = _exact_copies(paths, variant)
    with tempfile.TemporaryDirectory(prefix="identify-") as temp:
        try:
            shards, states = _original_shards(variant, Path(temp))
        except StorageError as exc:
            raise IdentifyError(f"the published weights cannot be read: {exc}") from exc
        try:
            suspect_state = suspect_read(path, n_heads=_n_heads(variant))
        except CheckpointError as exc:
            raise IdentifyError(str(exc)) from exc
        except Exception as exc:  # a damaged or foreign file: torch, pickle and safetensors each raise their own
            raise IdentifyError(
                f"{path} cannot be read as a checkpoint ({type(exc).__name__}): is the file complete?"
            ) from exc
        shapes = [{name: tuple(t.shape) for name, t in state.items()} for state in states]
        original, faced = {}, {}
        for shard, state, part in zip(shards, states, shard_slices(suspect_state, shapes), strict=True):
            for name, tensor in state.items():
                if tensor.dtype == torch.float16 and name in part:
                    original[f"{shard.name}:{name}"] = tensor.numpy()
                    faced[f"{shard.name}:{name}"] = part[name].numpy()
        if not faced:
            raise IdentifyError(
                f"{path} has no tensor of {variant.slug}'s shapes: is it a copy of another model or size?"
            )
        hf_original, hf_faced = _hf_originals(variant, Path(temp), suspect_state, _n_heads(variant))
        original |= hf_original
        faced = _Joined(faced, hf_faced)
        missing: set[str] = set()
        hf_files = list(WeightFile.objects.filter(variant=variant, name__startswith=HF_FOLDER, layout__isnull=False))
        formats = FORMATS if hf_original else ("meta",)
        candidates = _candidates(variant, shards + hf_files, missing, formats)
        found = fingerprint.identify(
            original, faced, {label: key_of for label, (_, key_of) in candidates.items()}, threshold=THRESHOLD
        )
    best: dict[int, dict] = {}
    for label, z in found.candidates:
        grant = candidates[label][0]
        if grant.pk not in best or z > best[grant.pk]["z"]:
            best[grant.pk] = {"grant": grant.pk, "user": grant.user.email, "z": round(float(z), 3)}
    ranked = sorted(best.values(), key=lambda entry: entry["z"], reverse=True)
    result = IdentifyResult(
        variant=variant.slug,
        threshold=THRESHOLD,
        candidates=ranked,
        accused=[entry["grant"] for entry in ranked if entry["z"] >= THRESHOLD],
        false_positive_bound=found.false_positive_bound,
        tensors_compared=found.tensors_compared,
        exact_copy_of=exact,
        keys_missing=sorted(missing),
    )
    with transaction.atomic():
        audit_event_record(
            action="fingerprint.identified",
            actor=actor,
            target=variant,
            request=request,
            details={
                "suspect": str(path),
                "accused": result.accused,
                "exact_copy_of": [entry["grant"] for entry in exact],
                "top": ranked[:3],
                "candidates": len(ranked),
                "tensors_compared": result.tensors_compared,
                "keys_missing": result.keys_missing,
            },
        )
    return result
