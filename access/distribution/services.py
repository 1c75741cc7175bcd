"""Services other domains call: fetching a published weight file, checked; and the leak rule,
which other uses of a grant (the sandbox) feed with the networks they were used from.

(The distribution's own writes live in their topic modules: ``bundles``, ``leak``,
``publishing``.)
"""

from __future__ import annotations

from pathlib import Path

from access.distribution.events import client_network
from access.distribution.leak import grant_leak_check, grant_leak_serialized, grant_network_source_register
from access.distribution.models import WeightFile
from access.distribution.storage import StorageError, weight_storage

__all__ = [
    "WeightFileFetchError",
    "client_network",
    "grant_leak_check",
    "grant_leak_serialized",
    "grant_network_source_register",
    "weight_file_fetch",
]


class WeightFileFetchError(Exception):
    """A published file that cannot be copied out of weight storage as it was published."""


def weight_file_fetch(*, weight_file: WeightFile, target: Path) -> None:
    """Copy a published file from weight storage to ``target``, checked against the sha256
    recorded when it was published; a file that does not match is removed and refused."""
    target = Path(target)
    try:
        stored = weight_storage().get_file(weight_file.storage_key, target)
    except StorageError as exc:
        raise WeightFileFetchError(f"Could not fetch {weight_file.name}: {exc}") from exc
    if stored.sha256 != weight_file.sha256:
        target.unlink(missing_ok=True)
        raise WeightFileFetchError(
            f"{weight_file.name} in weight storage does not match the sha256 recorded when it was published: "
            "the stored file changed. Publish the weights again (publish_weights)."
        )
