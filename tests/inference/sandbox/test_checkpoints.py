"""The sandbox worker's local copy of published weights: fetched from weight storage (local disk
or S3), checked against the recorded sha256, reused while complete, refused when tampered with."""

from __future__ import annotations

import hashlib

import pytest

from access.distribution.storage import weight_storage
from inference.llama.checkpoint import load_llama
from inference.sandbox.checkpoints import CheckpointFetchError, checkpoint_fetch


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("storage", ["local_storage", "s3_storage"])
def test_the_published_files_are_fetched_checked_and_loadable(request, storage, tmp_path):
    request.getfixturevalue(storage)
    variant, source, files = request.getfixturevalue("published_demo_weights")

    folder = checkpoint_fetch(variant, tmp_path / "cache")

    assert sorted(path.name for path in folder.iterdir() if not path.name.startswith(".")) == sorted(
        file.name for file in files
    )
    for file in files:
        assert _sha256(folder / file.name) == file.sha256
    model = load_llama(folder, device="cpu", verify=True)  # checklist.chk's md5 sums hold too
    assert model.args.dim == 64


def test_a_complete_copy_is_reused_and_a_damaged_one_fetched_again(published_demo_weights, tmp_path, monkeypatch):
    variant, _, files = published_demo_weights
    folder = checkpoint_fetch(variant, tmp_path / "cache")
    fetched = []
    storage = weight_storage()
    real_get = storage.get_file
    monkeypatch.setattr(
        storage, "get_file", lambda key, target, **kw: fetched.append(key) or real_get(key, target, **kw)
    )

    assert checkpoint_fetch(variant, tmp_path / "cache") == folder and fetched == []

    (folder / "params.json").write_text("{}")  # a different size: the copy is damaged
    assert checkpoint_fetch(variant, tmp_path / "cache") == folder
    assert len(fetched) == len(files) and _sha256(folder / "params.json") == next(
        file.sha256 for file in files if file.name == "params.json"
    )


def test_a_stored_file_that_changed_since_publishing_is_refused(published_demo_weights, tmp_path):
    variant, _, files = published_demo_weights
    params = next(file for file in files if file.name == "params.json")
    weight_storage().path(params.storage_key).write_text('{"dim": 4096}')

    with pytest.raises(CheckpointFetchError, match="does not match the sha256"):
        checkpoint_fetch(variant, tmp_path / "cache")

    assert not list((tmp_path / "cache").rglob("params.json"))


def test_nothing_published_says_what_to_do(llama_catalog, local_storage, tmp_path):
    from access.catalog.models import ModelVariant

    with pytest.raises(CheckpointFetchError, match="publish_weights"):
        checkpoint_fetch(ModelVariant.objects.get(slug="llama-7b"), tmp_path / "cache")
