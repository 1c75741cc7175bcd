"""Services other domains call: fetching a published weight file, checked.

(The distribution's own writes live in their topic modules: ``bundles``, ``leak``,
``publishing``.)
"""

from __future__ import annotations

from pathlib import Path

from access.distribution.models import WeightFile
from access.distribution.storage import StorageError, weight_storage


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
