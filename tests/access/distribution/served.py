"""What a download link sends, to check the gateway against: the recipient's marked copy (made here
by MarkedFile.read, not by the gateway's stream), the recipient's checklist.chk, or the file as
published."""

from __future__ import annotations

import hashlib

from access.distribution.fingerprints import CHECKLIST, copy_marked_file_for, recipient_checklist
from access.distribution.storage import weight_storage


def served_bytes(link) -> bytes:
    if link.copy_id is not None:
        marked = copy_marked_file_for(link.copy)
        return marked.read(0, marked.size)
    if link.file.name == CHECKLIST:
        made = recipient_checklist(link.bundle_id)
        if made is not None:
            return made
    return weight_storage().read_range(link.file.storage_key, 0, link.file.size)


def served_sha256(link) -> str:
    return hashlib.sha256(served_bytes(link)).hexdigest()


def served_etag(link) -> str:
    if link.copy_id is not None:
        return f'"{link.file.sha256}.{link.copy_id}"'
    if link.file.name == CHECKLIST and recipient_checklist(link.bundle_id) is not None:
        return f'"{served_sha256(link)}"'
    return f'"{link.file.sha256}"'
