"""What keeps a fingerprinted link from ever sending the file as published, or a researcher from
holding two differently marked copies: republished files, shards without float16 matrices,
unreadable shards, key rotation, and the identification page's folder."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
from django.test import Client

from access.distribution.bundles import bundle_create, bundle_files
from access.distribution.models import WeightFile
from access.distribution.publishing import WeightsPublishError, weights_publish
from access.distribution.tokens import bundle_manifest_path, link_path
from inference.llama.checkpoint import shard_paths


def _shard(bundle):
    return bundle.links.select_related("file", "copy").get(file__name="consolidated.00.pth")


def test_links_made_before_a_republish_refuse_the_new_bytes_and_say_to_make_new_links(client, bundle):
    shard = _shard(bundle)
    WeightFile.objects.filter(pk=shard.file_id).update(sha256="0" * 64)  # published again, other bytes
    refused = client.get(link_path(shard))
    assert refused.status_code == 410 and "Create new links" in refused.content.decode()
    shard.refresh_from_db()
    assert shard.downloads_used == 0
    manifest = client.get(bundle_manifest_path(bundle))
    assert manifest.status_code == 503 and "updated after these links were made" in manifest.content.decode()
    entry = next(entry for entry in bundle_files(bundle) if entry["name"] == "consolidated.00.pth")
    assert entry["outdated"] and entry["sha256"] is None


def test_new_links_after_a_key_rotation_keep_the_grants_copy(settings, grant, published_demo_weights):
    first = _shard(bundle_create(grant=grant, user=grant.user))
    settings.FINGERPRINT_KEYS = {"2027-01": b"n" * 32, **settings.FINGERPRINT_KEYS}
    again = _shard(bundle_create(grant=grant, user=grant.user))
    assert again.copy_id == first.copy_id and again.copy.key_id != "2027-01"
    body = b"".join(Client().get(link_path(again)).streaming_content)
    assert hashlib.sha256(body).hexdigest() == first.copy.sha256  # the same bytes as before the rotation


def test_a_shard_without_float16_matrices_is_sent_as_published_and_publishing_says_so(
    db, llama_catalog, local_storage, demo_checkpoint, tmp_path, researcher, reviewer, active_grant_make, client
):
    from access.catalog.models import ModelVariant

    source = tmp_path / "bf16"
    shutil.copytree(demo_checkpoint, source)
    for path in shard_paths(source):
        state = torch.load(path, weights_only=True)
        torch.save({name: tensor.to(torch.bfloat16) for name, tensor in state.items()}, path)
    (source / "checklist.chk").unlink()
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    result = weights_publish(variant=variant, source_dir=source)
    assert any("holds no float16 weight matrix" in warning for warning in result.warnings)
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    shard = _shard(bundle_create(grant=grant, user=researcher))
    assert shard.copy_id is None
    body = b"".join(client.get(link_path(shard)).streaming_content)
    assert body == (source / "consolidated.00.pth").read_bytes()


def test_publishing_refuses_a_shard_that_can_no_longer_be_read_rather_than_unmark_it(
    published_demo_weights, tmp_path
):
    variant, source_dir, _ = published_demo_weights
    broken = tmp_path / "broken"
    shutil.copytree(source_dir, broken)
    (broken / "consolidated.01.pth").write_bytes(b"not a zip file at all" * 100)
    with pytest.raises(WeightsPublishError, match="were published with fingerprints before"):
        weights_publish(variant=variant, source_dir=broken)
    assert WeightFile.objects.get(variant=variant, name="consolidated.01.pth").layout is not None


def test_the_identification_page_refuses_a_link_inside_its_folder_that_leads_outside(
    reviewer_client, settings, bundle, tmp_path, published_demo_weights
):
    suspects = tmp_path / "suspects"
    (suspects / "leak").mkdir(parents=True)
    (suspects / "leak" / "consolidated.00.pth").symlink_to(published_demo_weights[1] / "consolidated.00.pth")
    settings.FINGERPRINT_SUSPECT_DIR = str(suspects)
    response = reviewer_client.post("/review/fingerprints/", {"variant": "llama-demo-tiny", "suspect": "leak"})
    assert response.status_code == 400 and "lead outside" in response.content.decode()
