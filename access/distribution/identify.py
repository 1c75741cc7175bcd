"""Naming the grant behind a suspect copy of a variant's weights (``fingerprint_identify``, and the
reviewers' page): read the suspect (Meta's or transformers' layout, any float dtype; a folder or
single files), cut it as the original's shards were, score every grant ever issued for the
variant with the key its copies were marked with, and record the identification in the audit log.

A recipient's transformers-layout copy (hf/, issue 18) is made from their marked Meta copy, so
it carries the same marks: a suspect in that layout is read back into Meta's and scored the same
way.

An exact copy is named by its sha256 alone, from the recorded checksums of every copy served.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from django.db import transaction

from access.audit.services import audit_event_record
from access.catalog.models import ModelVariant
from access.distribution.fingerprints import fingerprint_key_current, fingerprint_master_key, recipient_label
from access.distribution.models import HF_FOLDER, WeightCopy, WeightFile
from access.distribution.storage import CHUNK_BYTES, StorageError, weight_storage
from access.grants.models import Grant
from inference.llama import fingerprint
from inference.llama.errors import CheckpointError
from inference.llama.suspect import shard_slices, suspect_read

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


def _original_shards(variant: ModelVariant, folder: Path) -> tuple[list[WeightFile], list[dict]]:
    """The variant's published Meta shards (those with a layout, so marked), loaded as float16 tensors."""
    shards = list(
        WeightFile.objects.filter(variant=variant, layout__isnull=False).exclude(name__startswith=HF_FOLDER)
        .order_by("name")
    )  # fmt: skip
    if not shards:
        raise IdentifyError(
            f"{variant.slug} has no published weight shards that carry fingerprints: publish its weights "
            "(publish_weights) before identifying copies."
        )
    storage, states = weight_storage(), []
    for shard in shards:
        if storage.name == "local":
            source = storage.path(shard.storage_key)
        else:
            source = folder / shard.name
            storage.get_file(shard.storage_key, source)
        states.append(torch.load(source, map_location="cpu", weights_only=True, mmap=True))
    return shards, states


def _n_heads(variant: ModelVariant) -> int:
    params = WeightFile.objects.filter(variant=variant, name="params.json").first()
    if params is None:
        raise IdentifyError(f"{variant.slug} has no published params.json: publish its weights first.")
    try:
        return int(json.loads(weight_storage().read_range(params.storage_key, 0, params.size))["n_heads"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IdentifyError(f"{variant.slug}'s params.json gives no n_heads: {exc}") from exc


def _candidates(
    variant: ModelVariant, files: list[WeightFile], missing: set[str]
) -> dict[str, tuple[Grant, Callable[[str], bytes]]]:
    """Every grant ever issued for the variant, once per master key its copies were marked with
    (the current key for a grant that never downloaded); ids of keys no longer in
    FINGERPRINT_KEYS are added to ``missing``."""
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

            def key_of(name: str, master=master, recipient=recipient) -> bytes:
                file_name, tensor = name.split(":", 1)
                return fingerprint.tensor_key(master, recipient, file_name, tensor)

            out[f"{grant.pk}:{key_id}"] = (grant, key_of)
    return out


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
        missing: set[str] = set()
        candidates = _candidates(variant, shards, missing)
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
