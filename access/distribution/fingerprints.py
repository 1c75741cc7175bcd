"""Per-recipient marked copies of weight files (issue 17): which key marks a grant's copy, the
copy as the gateway sends it (``copy_marked_file``), its checksums (``weight_copy_prepare``, run
by a Celery task when links are created), the recipient's own ``checklist.chk``, and naming the
grant behind a suspect copy (``fingerprint_identify``).

A copy is never stored: ``inference.llama.torch_zip.MarkedFile`` makes its marked pages and CRCs
while the rest is sent from the original. Keys: ``tensor_key(master, "grant:<id>", file name,
tensor name)``, with the master key named by the copy's ``key_id`` in FINGERPRINT_KEYS, so keys
can be rotated and old copies still identified.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.distribution.models import DownloadLink, WeightCopy, WeightFile, weight_file_format
from access.distribution.storage import CHUNK_BYTES, weight_storage
from inference.llama import fingerprint
from inference.llama.hf_convert import HfCopy
from inference.llama.torch_zip import Layout, MarkedFile, layout_from_json, layout_markable

logger = logging.getLogger(__name__)

CHECKLIST = "checklist.chk"
PREPARE_TASK = "access.weight_copy_prepare"


class ChecksumsPreparing(Exception):
    """A recipient's checksums are still being computed; the message says so."""


class CopyOutdated(ChecksumsPreparing):
    """The file was published again since the links were made: new links send the new version."""

    def __init__(self):
        super().__init__(
            "A file of this model was updated after these links were made, so their checksums no longer "
            "describe it. Create new links on your downloads page; files you finished need no new download "
            "unless their checksum changed."
        )


def fingerprint_key_current() -> str:
    return next(iter(settings.FINGERPRINT_KEYS))


def fingerprint_master_key(key_id: str) -> bytes:
    try:
        return settings.FINGERPRINT_KEYS[key_id]
    except KeyError:
        raise LookupError(
            f"the fingerprint key {key_id!r} is no longer in FINGERPRINT_KEYS: list it again (after the current "
            "one) to serve and identify the copies marked with it."
        ) from None


def recipient_label(grant_id: int) -> str:
    return f"grant:{grant_id}"


def copy_key_of(*, grant_id: int, key_id: str, file_name: str) -> Callable[[str], bytes]:
    """The key of each tensor of this grant's copy of the file."""
    master, recipient = fingerprint_master_key(key_id), recipient_label(grant_id)
    return lambda tensor: fingerprint.tensor_key(master, recipient, file_name, tensor)


_LAYOUTS: dict[tuple[int, str], Layout] = {}  # layouts found, by file and version (None is never kept)


def _layout(file_id: int, file_sha256: str) -> Layout | None:
    layout = _LAYOUTS.get((file_id, file_sha256))
    if layout is None:
        value = WeightFile.objects.filter(pk=file_id, sha256=file_sha256).values_list("layout", flat=True).first()
        if not value:
            return None
        if len(_LAYOUTS) >= 256:
            _LAYOUTS.clear()
        layout = _LAYOUTS[(file_id, file_sha256)] = layout_from_json(value)
    return layout


def _reader(storage_key: str):
    return lambda start, length: weight_storage().read_range(storage_key, start, length)


@lru_cache(maxsize=64)
def _marked_file_cached(
    grant_id: int, master_key: bytes, file_id: int, file_name: str, file_sha256: str, storage_key: str
) -> MarkedFile | HfCopy | None:
    # Keyed by everything its bytes follow from; storage is looked up at each read.
    layout = _layout(file_id, file_sha256)
    if layout is None:
        return None
    if layout.kind == "safetensors":
        return _hf_copy(grant_id, master_key, file_id, file_sha256, layout, storage_key)
    recipient = recipient_label(grant_id)
    return MarkedFile(
        layout, lambda tensor: fingerprint.tensor_key(master_key, recipient, file_name, tensor), _reader(storage_key)
    )


def _hf_copy(grant_id, master_key, file_id, file_sha256, layout, storage_key) -> HfCopy | None:
    """A transformers-layout shard as converted from the grant's own marked Meta shards (the same
    marks in both layouts: two differently marked copies of one model in one pair of hands would
    show where the marks are); None when the Meta shards it was converted from are no longer the
    published ones (the gateway then refuses it: never an unmarked copy)."""
    value, variant_id = (
        WeightFile.objects.filter(pk=file_id, sha256=file_sha256).values_list("layout", "variant_id").first()
        or ({}, None)
    )
    converted_from, n_heads = value.get("meta_shards") or {}, value.get("n_heads")
    shards = list(
        WeightFile.objects.filter(variant_id=variant_id, name__in=list(converted_from), layout__isnull=False)
        .order_by("name")
    )
    if not converted_from or not n_heads or {f.name: f.sha256 for f in shards} != converted_from:
        return None
    layouts, reads = [], []
    for shard in shards:
        marked = _marked_file_cached(grant_id, master_key, shard.pk, shard.name, shard.sha256, shard.storage_key)
        if marked is None:
            return None
        layouts.append(marked.layout)
        reads.append(marked.read)
    return HfCopy(layout, _reader(storage_key), layouts, reads, n_heads=int(n_heads))


def copy_marked_file(
    *, grant_id: int, key_id: str, file_id: int, file_name: str, file_sha256: str, storage_key: str,
    crcs: dict | None = None,
) -> MarkedFile | None:  # fmt: skip
    """The grant's copy as served (kept per process: its marked pages are drawn once), or None
    when the file has no layout (it is then sent as published). ``crcs``: the copy's CRCs as
    recorded, so they are not computed again."""
    master = fingerprint_master_key(key_id)
    if _layout(file_id, file_sha256) is None:
        return None  # not cached: a layout may be there at the next request
    marked = _marked_file_cached(grant_id, master, file_id, file_name, file_sha256, storage_key)
    if marked is not None and crcs:
        marked.crcs_known(crcs)
    return marked


def copy_marked_file_for(copy: WeightCopy) -> MarkedFile | None:
    file = copy.file
    return copy_marked_file(
        grant_id=copy.grant_id, key_id=copy.key_id, file_id=file.pk, file_name=file.name,
        file_sha256=copy.file_sha256, storage_key=file.storage_key, crcs=copy.crcs,
    )  # fmt: skip


def copy_crcs_record(copy_id: int, file_sha256: str, marked: MarkedFile) -> None:
    """Store the CRCs the gateway had to compute itself (a Range asked for them before the task
    ran), unless the copy was made from another version of the file."""
    WeightCopy.objects.filter(pk=copy_id, file_sha256=file_sha256, crcs__isnull=True).update(crcs=marked.crcs())


def weight_copies_for_bundle(grant, files: list[WeightFile]) -> dict[int, WeightCopy]:
    """The grant's copy of each file its links will send marked (by file id): files with a layout,
    of a variant with fingerprints on, marked with the current key. Made once per grant, file
    version and key, so links made again send the same bytes."""
    if not grant.variant.fingerprint:
        return {}
    copies = {}
    meta_key_id = None  # the key of the grant's Meta copies, which its transformers copies are made from
    # Meta's shards first: a transformers-layout shard is made from the grant's Meta copies.
    files = sorted(files, key=lambda f: (weight_file_format(f.name) != "meta", f.name))
    for weight_file in files:
        if not weight_file.layout or not layout_markable(layout_from_json(weight_file.layout)):
            continue
        if weight_file_format(weight_file.name) == "hf":
            if meta_key_id is not None:  # else the Meta shards carry no marks: these go as published
                copies[weight_file.pk], _ = WeightCopy.objects.get_or_create(
                    grant=grant, file=weight_file, file_sha256=weight_file.sha256, key_id=meta_key_id
                )
            continue
        # The grant's copy of this file version, whatever key is current now, while its key is
        # listed: two differently marked copies in one pair of hands show where the marks are.
        earlier = [
            copy for copy in WeightCopy.objects.filter(grant=grant, file=weight_file, file_sha256=weight_file.sha256)
            .order_by("created_at", "pk")
            if copy.key_id in settings.FINGERPRINT_KEYS
        ]  # fmt: skip
        copy = earlier[0] if earlier else WeightCopy.objects.create(
            grant=grant, file=weight_file, file_sha256=weight_file.sha256, key_id=fingerprint_key_current()
        )  # fmt: skip
        copies[weight_file.pk] = copy
        meta_key_id = meta_key_id or copy.key_id
    return copies


def weight_copies_prepare_later(copies) -> None:
    """Compute the copies' checksums now when they are small (FINGERPRINT_INLINE_CHECKSUM_BYTES in
    all: a fraction of a second), so the links are ready at once; else queue each copy whose
    checksums are not computed yet, once the transaction commits."""
    pending = [copy for copy in copies if copy.prepared_at is None]
    if not pending:
        return
    if sum(copy.file.size for copy in pending) <= settings.FINGERPRINT_INLINE_CHECKSUM_BYTES:
        for copy in pending:
            weight_copy_prepare(copy.pk)
            copy.refresh_from_db()
        return
    pending_ids = [copy.pk for copy in pending]
    transaction.on_commit(lambda: _prepare_enqueue(pending_ids))


def _prepare_enqueue(copy_ids: list[int]) -> None:
    from celery import current_app

    # By name: access.distribution.tasks imports this module.
    task = current_app.tasks[PREPARE_TASK]
    for copy_id in copy_ids:
        try:
            task.delay(copy_id)
        except Exception:  # the broker is down: the links still work; making links again retries
            logger.exception("fingerprints: could not queue the checksums of copy %s", copy_id)


def weight_copy_prepare(copy_id: int) -> WeightCopy:
    """Compute a copy's CRCs, then its sha256 and md5 by reading it once, front to back; record
    them. Cheap when already done."""
    copy = WeightCopy.objects.select_related("file").get(pk=copy_id)
    if copy.prepared_at is not None:
        return copy
    marked = copy_marked_file_for(copy)
    if marked is None:
        raise ValueError(f"{copy.file} has no layout: it is sent unmarked and has no copy to prepare.")
    started = timezone.now()
    crcs = marked.crcs()
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    for at in range(0, marked.size, CHUNK_BYTES):
        block = marked.read(at, CHUNK_BYTES)
        sha256.update(block)
        md5.update(block)
    copy.crcs, copy.sha256, copy.md5 = crcs, sha256.hexdigest(), md5.hexdigest()
    copy.prepared_at = timezone.now()
    copy.save(update_fields=["crcs", "sha256", "md5", "prepared_at"])
    logger.info(
        "fingerprints: prepared %s for grant %s (%d bytes, %d marked) in %.1f s",
        copy.file, copy.grant_id, marked.size, marked.marked_bytes, (copy.prepared_at - started).total_seconds(),
    )  # fmt: skip
    return copy


def bundle_has_marked_links(bundle_id: int) -> bool:
    return DownloadLink.objects.filter(bundle_id=bundle_id, copy__isnull=False).exists()


def recipient_checklist(bundle_id: int, links: list[DownloadLink] | None = None) -> bytes | None:
    """The bundle's own checklist.chk (md5sum format, as published, one line per other file of
    Meta's layout) with each marked file's md5 the recipient's copy's; None when no link of the
    bundle is marked.
    Raises ChecksumsPreparing while any copy's checksums are being computed."""
    if links is None:  # else: the bundle's links with their files and copies, already loaded
        links = list(
            DownloadLink.objects.filter(bundle_id=bundle_id).select_related("file", "copy").order_by("file__name")
        )
    if not any(link.copy_id for link in links):
        return None
    lines = []
    for link in links:
        # Meta's checklist.chk lists the files of its folder; the hf/ set has its sha256s elsewhere.
        if link.file.name == CHECKLIST or weight_file_format(link.file.name) != "meta":
            continue
        if link.copy_id is not None and link.copy.file_sha256 != link.file.sha256:
            raise CopyOutdated()
        if link.copy_id is not None and link.copy.prepared_at is None:
            raise ChecksumsPreparing(
                "Your copy's checksums are still being computed (a minute or two for a large model). "
                "Try again shortly; the downloads page shows when they are ready."
            )
        md5 = link.copy.md5 if link.copy_id is not None else link.file.md5
        lines.append(f"{md5}  {link.file.name}\n")
    return "".join(lines).encode()
