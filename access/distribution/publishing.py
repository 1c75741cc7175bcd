"""Publishing a variant's weight files into weight storage (``publish_weights``).

A Meta-format folder holds ``params.json``, ``consolidated.NN.pth`` shards and
``tokenizer.model``. Every file is streamed into storage once, its sha256 and md5
computed on the way; a fresh ``checklist.chk`` (``md5sum`` format, as Meta ships
it) is published beside them, and ``WeightFile`` rows record what the gateway
hands out. Publishing again is cheap and safe: a file whose stored copy already
has the same size and sha256 is hashed but not uploaded again.

With ``formats`` including ``hf`` the variant is also published in transformers' layout
(``inference.llama.hf_convert``: config, sharded safetensors with their index, tokenizer files),
converted shard by shard into a temporary folder and stored under ``hf/`` as a second file set of
the same variant: the downloads page, download.sh (``--format hf``) and the hub endpoint offer it.
A recipient's copy of its safetensors shards is made from their marked Meta shards
(``access.distribution.fingerprints``), so both layouts carry the same marks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from access.audit.services import audit_event_record
from access.catalog.models import ModelVariant
from access.catalog.services import TINY_DEMO
from access.distribution.models import FORMATS, HF_FOLDER, DownloadEvent, WeightFile, weight_file_format
from access.distribution.storage import CHUNK_BYTES, StorageError, weight_storage

CHECKLIST = "checklist.chk"
PARAMS = "params.json"
TOKENIZER = "tokenizer.model"
SHARD_PATTERN = re.compile(r"consolidated\.(\d{2})\.pth")
HF_SHARD_PATTERN = re.compile(r"hf/model-\d{5}-of-\d{5}\.safetensors")
# File names end up in storage keys, URLs and download.sh: keep them plain.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# progress_factory(file_name, size_in_bytes) -> a context manager whose value has .update(n_bytes)
# (and optionally .reset()), e.g. a tqdm bar.
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager]


class WeightsPublishError(Exception):
    """The source folder cannot be published as it is; the message says what to fix."""


@dataclass(frozen=True)
class PublishedFile:
    name: str
    size: int
    sha256: str
    md5: str
    uploaded: bool  # False: storage already held these exact bytes


@dataclass
class PublishResult:
    variant: ModelVariant
    storage: str
    files: list[PublishedFile]
    weight_files: list[WeightFile]
    removed: list[str] = field(default_factory=list)  # files gone from the source, unpublished
    kept: list[str] = field(default_factory=list)  # gone from the source but still referenced by links
    warnings: list[str] = field(default_factory=list)

    @property
    def uploaded(self) -> int:
        return sum(f.uploaded for f in self.files)

    @property
    def unchanged(self) -> int:
        return len(self.files) - self.uploaded

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def weight_file_key(variant: ModelVariant, name: str) -> str:
    return f"{variant.slug}/{name}"


def formats_parse(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``meta,hf`` as a tuple of known formats, in FORMATS order; WeightsPublishError if unfit."""
    names = [part.strip().lower() for part in (value.split(",") if isinstance(value, str) else value)]
    names = [name for name in names if name]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise WeightsPublishError(f"unknown format {', '.join(unknown)}: choose among {', '.join(FORMATS)}.")
    if "meta" not in names:
        raise WeightsPublishError(
            "the formats must include meta: the transformers files are converted from the Meta checkpoint, "
            "which stays the published reference (and what fingerprints are identified against)."
        )
    return tuple(name for name in FORMATS if name in names)


def weights_source_files(source_dir: Path) -> list[Path]:
    """The files of a Meta-format folder to publish (all but checklist.chk, which is rebuilt), by name.

    Raises WeightsPublishError naming what is missing or wrong.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise WeightsPublishError(f"{source_dir} is not a folder: pass the folder holding params.json and the shards.")
    files = sorted(
        (p for p in source_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != CHECKLIST),
        key=lambda p: p.name,
    )
    names = [p.name for p in files]
    problems = []
    if PARAMS not in names:
        problems.append(f"{PARAMS} is missing")
    else:
        try:
            if not isinstance(json.loads((source_dir / PARAMS).read_text()), dict):
                problems.append(f"{PARAMS} is not a JSON object")
        except (ValueError, UnicodeDecodeError):
            problems.append(f"{PARAMS} is not valid JSON")
    if TOKENIZER not in names:
        problems.append(f"{TOKENIZER} is missing")
    shards = sorted(n for n in names if SHARD_PATTERN.fullmatch(n))
    expected = [f"consolidated.{i:02d}.pth" for i in range(len(shards))]
    if not shards:
        problems.append("there is no consolidated.NN.pth shard")
    elif shards != expected:
        problems.append(f"the shards are {shards}, expected {expected} (one is missing)")
    unsafe = [n for n in names if not SAFE_NAME.fullmatch(n)]
    if unsafe:
        problems.append(f"{unsafe} have names unfit for download links (use letters, digits, '.', '_', '-')")
    empty = [p.name for p in files if p.stat().st_size == 0]
    if empty:
        problems.append(f"{empty} are empty")
    if problems:
        raise WeightsPublishError(f"{source_dir} is not a Meta-format checkpoint folder: " + "; ".join(problems) + ".")
    return files


def _file_hashes(path: Path, progress) -> tuple[int, str, str]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            sha256.update(block)
            md5.update(block)
            size += len(block)
            progress(len(block))
    return size, sha256.hexdigest(), md5.hexdigest()


def _weights_layout(name: str, source: Path, warnings: list[str]) -> dict | None:
    """Where a shard's tensors lie, read once here so the gateway can serve recipients' marked
    copies (access.distribution.fingerprints); None for files without weights."""
    from inference.llama.torch_zip import (
        LayoutError,
        checkpoint_layout,
        layout_markable,
        layout_to_json,
        safetensors_layout,
    )

    if HF_SHARD_PATTERN.fullmatch(name):
        read_layout = safetensors_layout
    elif SHARD_PATTERN.fullmatch(name):
        read_layout = checkpoint_layout
    else:
        return None
    try:
        layout = read_layout(source)
    except (LayoutError, zipfile.BadZipFile, OSError, pickle.UnpicklingError, ValueError) as exc:
        warnings.append(
            f"{source.name} cannot be read as a torch.save checkpoint ({exc}); it is sent to every recipient "
            "unmarked, without a fingerprint."
        )
        return None
    if not layout_markable(layout):
        warnings.append(
            f"{source.name} holds no float16 weight matrix, the only kind that carries fingerprints; it is sent "
            "to every recipient unmarked."
        )
    return layout_to_json(layout)


def _file_publish(
    *, storage, name: str, key: str, source: Path, existing: WeightFile | None, progress_factory
) -> PublishedFile:
    size = source.stat().st_size
    with progress_factory(name, size) as bar:
        # Same size in the database and in storage: hash locally (no transfer) and skip the upload on a match.
        if existing is not None and existing.size == size and storage.stat(key) == size:
            local_size, sha256, md5 = _file_hashes(source, bar.update)
            if sha256 == existing.sha256:
                return PublishedFile(name=name, size=local_size, sha256=sha256, md5=md5, uploaded=False)
            if hasattr(bar, "reset"):  # the bytes are read again for the upload
                bar.reset()
        stored = storage.put_file(key, source, progress=bar.update)
    return PublishedFile(name=name, size=stored.size, sha256=stored.sha256, md5=stored.md5, uploaded=True)


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _no_progress(name: str, size: int) -> _NoProgress:
    return _NoProgress()


def _source_checklist_warnings(source_dir: Path, files: list[PublishedFile]) -> list[str]:
    # A checklist.chk shipped with the source should agree with the bytes just read; say so when it does not.
    path = source_dir / CHECKLIST
    if not path.is_file():
        return []
    md5s = {f.name: f.md5 for f in files}
    warnings = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            continue
        expected, name = parts[0].lower(), parts[1].strip().lstrip("*")
        if name in md5s and md5s[name] != expected:
            warnings.append(
                f"{name}: md5 {md5s[name]} differs from {expected} in the source's {CHECKLIST}; "
                "the published checklist lists the bytes uploaded: check the source copy."
            )
    return warnings


def weights_publish(
    *,
    variant: ModelVariant,
    source_dir: Path,
    formats: tuple[str, ...] | str = ("meta",),
    actor=None,
    progress_factory: ProgressFactory | None = None,
    convert_progress: Callable[[str], object] | None = None,
) -> PublishResult:
    """Publish a Meta-format checkpoint folder as the variant's downloadable files, and with
    ``hf`` in formats its transformers-layout conversion under hf/; idempotent.

    Uploads run outside any transaction (they may take hours); the WeightFile rows,
    the removal of files no longer in the source and the audit event then commit together.
    Only the file sets named in formats are replaced: publishing meta alone keeps hf/ files.
    Raises WeightsPublishError for a bad folder and StorageError when storage fails.
    """
    formats = formats_parse(formats)
    source_dir = Path(source_dir)
    sources = [(source.name, source) for source in weights_source_files(source_dir)]
    if "hf" not in formats:
        _stale_conversion_check(variant, sources)
    with tempfile.TemporaryDirectory(prefix="publish-") as temp:
        if "hf" in formats:
            sources += _hf_convert(source_dir, Path(temp) / "hf", convert_progress)
        checklist = Path(temp) / CHECKLIST
        # Meta's checklist.chk lists the files of its folder, as Meta shipped it.
        checklist_of = [name for name, _ in sources if weight_file_format(name) == "meta"]
        return _sources_publish(variant, source_dir, sources, formats, checklist, checklist_of, actor, progress_factory)


def _stale_conversion_check(variant: ModelVariant, sources: list[tuple[str, Path]]) -> None:
    """Publishing Meta's layout alone must not change the shards a published transformers-layout
    set was converted from: it would then be another model's (and recipients' transformers
    copies, made from their Meta copies, could not be made)."""
    converted = WeightFile.objects.filter(variant=variant, name__startswith=HF_FOLDER).exists()
    if not converted:
        return
    current = dict(WeightFile.objects.filter(variant=variant).values_list("name", "sha256"))
    changed = [
        name for name, source in sources
        if SHARD_PATTERN.fullmatch(name) and _file_hashes(source, lambda n: None)[1] != current.get(name)
    ]  # fmt: skip
    if changed:
        raise WeightsPublishError(
            f"{', '.join(changed)} differ from the published shards, and {variant.slug} is also published in "
            "transformers' layout, converted from those: publish with --formats meta,hf so both change "
            "together. Nothing was changed."
        )


def _hf_convert(source_dir: Path, out_dir: Path, progress) -> list[tuple[str, Path]]:
    from inference.llama.errors import CheckpointError
    from inference.llama.hf_convert import meta_to_hf

    try:
        written = meta_to_hf(source_dir, out_dir, progress=progress)
    except (CheckpointError, KeyError, ValueError, RuntimeError, OSError, pickle.UnpicklingError) as exc:
        raise WeightsPublishError(f"{source_dir} cannot be converted to transformers' layout: {exc}") from exc
    return sorted((HF_FOLDER + path.name, path) for path in written)


def _sources_publish(
    variant, source_dir, sources, formats, checklist: Path, checklist_of, actor, progress_factory
) -> PublishResult:
    storage = weight_storage()
    progress_factory = progress_factory or _no_progress
    existing = {wf.name: wf for wf in WeightFile.objects.filter(variant=variant)}
    layout_warnings: list[str] = []
    layouts = {name: _weights_layout(name, source, layout_warnings) for name, source in sources}
    lost = [name for name, layout in layouts.items() if layout is None and existing.get(name) and existing[name].layout]
    if lost:
        # Publishing it anyway would send every recipient's link the unmarked file.
        raise WeightsPublishError(
            f"{', '.join(lost)} cannot be read as a checkpoint now, but were published with "
            "fingerprints before: check the source files; nothing was changed. " + " ".join(layout_warnings)
        )

    published = [
        _file_publish(
            storage=storage,
            name=name,
            key=weight_file_key(variant, name),
            source=source,
            existing=existing.get(name),
            progress_factory=progress_factory,
        )
        for name, source in sources
    ]
    md5s = {f.name: f.md5 for f in published}
    if "hf" in formats:
        # What a recipient's transformers copy is made from: their copies of these Meta shards.
        meta_shards = {f.name: f.sha256 for f in published if SHARD_PATTERN.fullmatch(f.name)}
        n_heads = json.loads((source_dir / PARAMS).read_text())["n_heads"]
        for name, layout in layouts.items():
            if layout is not None and HF_SHARD_PATTERN.fullmatch(name):
                layout |= {"meta_shards": meta_shards, "n_heads": n_heads}
    checklist.write_text("".join(f"{md5s[name]}  {name}\n" for name in sorted(checklist_of)))
    published.append(
        _file_publish(
            storage=storage,
            name=CHECKLIST,
            key=weight_file_key(variant, CHECKLIST),
            source=checklist,
            existing=existing.get(CHECKLIST),
            progress_factory=progress_factory,
        )
    )
    published.sort(key=lambda f: f.name)
    result = PublishResult(
        variant=variant,
        storage=storage.name,
        files=published,
        weight_files=[],
        warnings=_source_checklist_warnings(source_dir, published) + layout_warnings,
    )

    stale_keys = []
    with transaction.atomic():
        ModelVariant.objects.select_for_update().filter(pk=variant.pk).first()  # one publisher per variant at a time
        current = {wf.name: wf for wf in WeightFile.objects.filter(variant=variant)}
        for f in published:
            row = current.get(f.name) or WeightFile(variant=variant, name=f.name)
            fields = (weight_file_key(variant, f.name), f.size, f.sha256, f.md5, layouts.get(f.name))
            if row.pk is None or (row.storage_key, row.size, row.sha256, row.md5, row.layout) != fields:
                row.storage_key, row.size, row.sha256, row.md5, row.layout = fields
                row.published_at = timezone.now()
                row.full_clean()
                row.save()
            result.weight_files.append(row)
        names = {f.name for f in published}
        for name, row in sorted(current.items()):
            if name in names or weight_file_format(name) not in formats:
                continue
            if row.links.exists() or DownloadEvent.objects.filter(file=row).exists():
                result.kept.append(name)
            else:
                stale_keys.append(row.storage_key)
                row.delete()
                result.removed.append(name)
        audit_event_record(
            action="weights.published",
            actor=actor,
            target=variant,
            details={
                "storage": storage.name,
                "formats": list(formats),
                "files": len(published),
                "uploaded": result.uploaded,
                "unchanged": result.unchanged,
                "bytes": result.total_bytes,
                "removed": result.removed,
                "kept": result.kept,
            },
        )
        transaction.on_commit(lambda: _objects_delete(storage, stale_keys))
    return result


def _objects_delete(storage, keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(StorageError):  # an orphaned object wastes space but harms no one
            storage.delete(key)


DEMO_VARIANT_SLUG = "llama-demo-tiny"
DEMO_SHARDS = 2  # more than one, so the demo shows how multi-shard checkpoints download


def demo_weights_publish(*, folder: Path) -> PublishResult:
    """Development (`make run`): make the llama-demo-tiny checkpoint in folder unless it is
    there, then publish it to weight storage in both layouts; cheap when both are already done."""
    from inference.llama.checkpoint import tiny_llama_make

    folder = Path(folder)
    variant = ModelVariant.objects.get(slug=DEMO_VARIANT_SLUG)
    try:
        weights_source_files(folder)
    except WeightsPublishError:  # missing, or left half-written by an interrupted run
        tiny_llama_make(folder, n_shards=DEMO_SHARDS, **TINY_DEMO)
    return weights_publish(variant=variant, source_dir=folder, formats=FORMATS)
