"""The sandbox worker's local copy of a variant's published weights.

A worker loads a model from the files the portal published to weight storage (local disk or
S3), copied once into a cache folder and checked against the sha256 recorded when they were
published, so a worker never runs weights the portal did not publish. The folder is named after
the published file set, so publishing new weights makes a new folder instead of mixing files;
a file lock keeps two worker processes on one machine from fetching the same set at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from access.catalog.models import ModelVariant
from access.distribution.selectors import weight_files_published
from access.distribution.services import WeightFileFetchError, weight_file_fetch

VERIFIED = ".verified.json"  # written last: the folder is complete and every file matched
STALE_PARTIAL_SECONDS = 3600  # a tokenizer fetch still unfinished after this long was abandoned


class CheckpointFetchError(Exception):
    """The variant's weights cannot be made available; the message says what to do."""


def checkpoint_fetch(variant: ModelVariant, cache_root: Path) -> Path:
    """The local folder holding ``variant``'s published files, each checked against its sha256;
    fetched from weight storage unless an earlier fetch of the same files is complete."""
    files = list(weight_files_published(variant))
    if not files:
        raise CheckpointFetchError(f"No weights of {variant.slug} are published; run publish_weights first.")
    expected = {file.name: [file.sha256, file.size] for file in files}
    digest = hashlib.sha256(json.dumps(sorted(expected.items())).encode()).hexdigest()[:16]
    folder = Path(cache_root) / variant.slug / digest
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the worker dies
        if _verified(folder) == expected and all(
            (folder / name).is_file() and (folder / name).stat().st_size == size for name, (_, size) in expected.items()
        ):
            return folder
        (folder / VERIFIED).unlink(missing_ok=True)
        for file in files:
            try:
                weight_file_fetch(weight_file=file, target=folder / file.name)
            except WeightFileFetchError as exc:
                raise CheckpointFetchError(f"{variant.slug}: {exc}") from exc
        (folder / VERIFIED).write_text(json.dumps(expected, sort_keys=True))
    return folder


def tokenizer_fetch(variant: ModelVariant, cache_root: Path) -> Path:
    """The local copy of ``variant``'s published tokenizer.model alone (the web processes need it,
    never the weights), checked against its sha256 and named after it, so new weights with a new
    tokenizer make a new file. Written under a temporary name and renamed: processes fetching it
    at once never see half a file. A copy that no longer matches is fetched again."""
    published = weight_files_published(variant).filter(name="tokenizer.model").first()
    if published is None:
        raise CheckpointFetchError(f"No tokenizer.model of {variant.slug} is published; run publish_weights first.")
    folder = Path(cache_root) / variant.slug / "tokenizers"
    target = folder / f"{published.sha256[:32]}.model"
    try:
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == published.sha256:
            return target  # a tokenizer is small (LLaMA's: 500 kB): checking it costs a millisecond
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.partial"):  # left by a process killed mid-fetch
            if time.time() - stale.stat().st_mtime > STALE_PARTIAL_SECONDS:
                stale.unlink(missing_ok=True)
        partial = folder / f".{uuid.uuid4().hex}.partial"
        try:
            weight_file_fetch(weight_file=published, target=partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except WeightFileFetchError as exc:
        raise CheckpointFetchError(f"{variant.slug}: {exc}") from exc
    except OSError as exc:
        raise CheckpointFetchError(f"{variant.slug}: the tokenizer could not be cached in {folder}: {exc}") from exc
    return target


def _verified(folder: Path) -> dict[str, str] | None:
    try:
        return json.loads((folder / VERIFIED).read_text())
    except (OSError, ValueError):
        return None
