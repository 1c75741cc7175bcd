"""Publishing a checkpoint folder into weight storage: weights_publish and `manage.py publish_weights`."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
import subprocess

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.distribution.models import DownloadBundle, DownloadLink, WeightFile
from access.distribution.publishing import WeightsPublishError, demo_weights_publish, weights_publish
from access.grants.services import grant_create
from inference.llama.checkpoint import load_llama

DEMO_FILES = ["checklist.chk", "consolidated.00.pth", "consolidated.01.pth", "params.json", "tokenizer.model"]


@pytest.fixture
def demo_variant(llama_catalog):
    return ModelVariant.objects.get(slug="llama-demo-tiny")


@pytest.fixture
def checkpoint_copy(demo_checkpoint, tmp_path):
    """A copy of the session's demo checkpoint that a test may change."""
    return shutil.copytree(demo_checkpoint, tmp_path / "source")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stored_bytes(storage, key: str) -> bytes:
    if storage.name == "local":
        return storage.path(key).read_bytes()
    return storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"].read()


def _publish_events(variant):
    return list(AuditEvent.objects.filter(action="weights.published", target_id=str(variant.pk)).order_by("id"))


def test_publishing_stores_every_file_with_its_checksums(published_demo_weights, local_storage):
    variant, source, weight_files = published_demo_weights

    assert [wf.name for wf in weight_files] == DEMO_FILES
    assert list(WeightFile.objects.filter(variant=variant)) == weight_files
    for wf in weight_files:
        data = local_storage.path(wf.storage_key).read_bytes()
        assert wf.storage_key == f"llama-demo-tiny/{wf.name}"
        assert (wf.size, wf.sha256, wf.md5) == (len(data), _sha256(data), hashlib.md5(data).hexdigest())
        if wf.name != "checklist.chk":
            assert data == (source / wf.name).read_bytes()


def test_published_checklist_is_what_md5sum_checks_and_the_checkpoint_loads(published_demo_weights, local_storage):
    variant, source, weight_files = published_demo_weights
    folder = local_storage.path("llama-demo-tiny/params.json").parent

    checklist = (folder / "checklist.chk").read_text()
    check = subprocess.run(["md5sum", "-c", "checklist.chk"], cwd=folder, capture_output=True, text=True, check=False)

    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(line.split("  ")[1] for line in checklist.splitlines()) == [n for n in DEMO_FILES if n != "checklist.chk"]
    assert checklist == (source / "checklist.chk").read_text()  # the same format Meta's (and make_tiny_llama's) uses
    assert load_llama(folder, device="cpu", verify=True).args.dim == 64


def test_publishing_records_one_audit_event_with_counts(published_demo_weights, admin_user, checkpoint_copy):
    variant, _, _ = published_demo_weights

    weights_publish(variant=variant, source_dir=checkpoint_copy, actor=admin_user)

    first, second = _publish_events(variant)
    assert first.actor_label == "system"
    assert first.details | {"bytes": 0} == {
        "storage": "local", "formats": ["meta"], "files": 5, "uploaded": 5, "unchanged": 0, "bytes": 0,
        "removed": [], "kept": [],
    }  # fmt: skip
    assert first.details["bytes"] == sum(wf.size for wf in WeightFile.objects.filter(variant=variant))
    assert second.actor_label == admin_user.email
    assert (second.details["uploaded"], second.details["unchanged"]) == (0, 5)


def test_publishing_again_uploads_nothing(published_demo_weights, local_storage):
    variant, source, weight_files = published_demo_weights
    stored = {wf.name: local_storage.path(wf.storage_key).stat() for wf in weight_files}

    result = weights_publish(variant=variant, source_dir=source)

    assert (result.uploaded, result.unchanged) == (0, 5)
    assert [(f.name, f.sha256) for f in result.files] == [(wf.name, wf.sha256) for wf in weight_files]
    for wf in weight_files:
        after = local_storage.path(wf.storage_key).stat()
        assert (after.st_ino, after.st_mtime_ns) == (stored[wf.name].st_ino, stored[wf.name].st_mtime_ns)
    assert list(WeightFile.objects.filter(variant=variant).values_list("published_at", flat=True)) == [
        wf.published_at for wf in weight_files
    ]


def test_a_changed_file_is_uploaded_again_with_a_new_checklist(published_demo_weights, local_storage, checkpoint_copy):
    variant, _, before = published_demo_weights
    (checkpoint_copy / "params.json").write_text((checkpoint_copy / "params.json").read_text().strip() + " \n")

    result = weights_publish(variant=variant, source_dir=checkpoint_copy)

    assert {f.name for f in result.files if f.uploaded} == {"params.json", "checklist.chk"}
    params = WeightFile.objects.get(variant=variant, name="params.json")
    assert params.sha256 == _sha256((checkpoint_copy / "params.json").read_bytes()) != before[3].sha256
    assert local_storage.path(params.storage_key).read_bytes() == (checkpoint_copy / "params.json").read_bytes()
    checklist = local_storage.path("llama-demo-tiny/checklist.chk").read_text()
    assert f"{params.md5}  params.json\n" in checklist


def test_a_file_missing_from_storage_is_uploaded_again(published_demo_weights, local_storage):
    variant, source, _ = published_demo_weights
    local_storage.delete("llama-demo-tiny/consolidated.01.pth")

    result = weights_publish(variant=variant, source_dir=source)

    assert [f.name for f in result.files if f.uploaded] == ["consolidated.01.pth"]
    assert local_storage.path("llama-demo-tiny/consolidated.01.pth").read_bytes() == (
        source / "consolidated.01.pth"
    ).read_bytes()


def test_a_truncated_stored_file_is_uploaded_again(published_demo_weights, local_storage):
    variant, source, _ = published_demo_weights
    local_storage.path("llama-demo-tiny/tokenizer.model").write_bytes(b"half")

    result = weights_publish(variant=variant, source_dir=source)

    assert [f.name for f in result.files if f.uploaded] == ["tokenizer.model"]
    assert local_storage.stat("llama-demo-tiny/tokenizer.model") == (source / "tokenizer.model").stat().st_size


def test_a_file_gone_from_the_source_is_unpublished(
    published_demo_weights, local_storage, checkpoint_copy, django_capture_on_commit_callbacks
):
    variant, _, _ = published_demo_weights
    (checkpoint_copy / "README.md").write_text("notes\n")
    weights_publish(variant=variant, source_dir=checkpoint_copy)
    assert local_storage.stat("llama-demo-tiny/README.md") == 6
    (checkpoint_copy / "README.md").unlink()

    with django_capture_on_commit_callbacks(execute=True):  # the stored object goes once the rows are gone
        result = weights_publish(variant=variant, source_dir=checkpoint_copy)

    assert result.removed == ["README.md"]
    assert not WeightFile.objects.filter(variant=variant, name="README.md").exists()
    assert local_storage.stat("llama-demo-tiny/README.md") is None
    assert "README.md" not in local_storage.path("llama-demo-tiny/checklist.chk").read_text()


def test_a_file_gone_from_the_source_stays_while_download_links_use_it(
    published_demo_weights, local_storage, checkpoint_copy, researcher, admin_user, django_capture_on_commit_callbacks
):
    variant, _, _ = published_demo_weights
    (checkpoint_copy / "README.md").write_text("notes\n")
    weights_publish(variant=variant, source_dir=checkpoint_copy)
    grant = grant_create(user=researcher, variant=variant, actor=admin_user, reason="demo")
    bundle = DownloadBundle.objects.create(grant=grant, expires_at=timezone.now() + dt.timedelta(hours=1))
    readme = WeightFile.objects.get(variant=variant, name="README.md")
    DownloadLink.objects.create(bundle=bundle, file=readme, max_downloads=5)
    (checkpoint_copy / "README.md").unlink()

    with django_capture_on_commit_callbacks(execute=True):
        result = weights_publish(variant=variant, source_dir=checkpoint_copy)

    assert (result.removed, result.kept) == ([], ["README.md"])
    assert WeightFile.objects.filter(pk=readme.pk).exists()
    assert local_storage.stat("llama-demo-tiny/README.md") == 6
    assert _publish_events(variant)[-1].details["kept"] == ["README.md"]


def _break(folder, problem):
    if problem == "params.json is missing":
        (folder / "params.json").unlink()
    elif problem == "params.json is not valid JSON":
        (folder / "params.json").write_text("{dim: 64")
    elif problem == "tokenizer.model is missing":
        (folder / "tokenizer.model").unlink()
    elif problem == "there is no consolidated.NN.pth shard":
        for shard in folder.glob("consolidated.*.pth"):
            shard.unlink()
    elif problem == "expected ['consolidated.00.pth'] (one is missing)":
        (folder / "consolidated.00.pth").unlink()
    elif problem == "names unfit for download links":
        (folder / "notes (copy).txt").write_text("x")
    elif problem == "['tokenizer.model'] are empty":
        (folder / "tokenizer.model").write_bytes(b"")


@pytest.mark.parametrize(
    "problem",
    [
        "params.json is missing",
        "params.json is not valid JSON",
        "tokenizer.model is missing",
        "there is no consolidated.NN.pth shard",
        "expected ['consolidated.00.pth'] (one is missing)",
        "names unfit for download links",
        "['tokenizer.model'] are empty",
    ],
)
def test_a_folder_that_is_not_a_checkpoint_is_refused_with_the_reason(
    demo_variant, local_storage, checkpoint_copy, problem
):
    _break(checkpoint_copy, problem)

    with pytest.raises(WeightsPublishError) as excinfo:
        weights_publish(variant=demo_variant, source_dir=checkpoint_copy)

    assert problem in str(excinfo.value)
    assert str(checkpoint_copy) in str(excinfo.value)
    assert not WeightFile.objects.exists()
    assert not local_storage.root.exists() or not any(local_storage.root.rglob("*"))
    assert not _publish_events(demo_variant)


def test_publishing_to_s3_stores_every_file(s3_storage, published_demo_weights):
    variant, source, weight_files = published_demo_weights

    assert [wf.name for wf in weight_files] == DEMO_FILES
    for wf in weight_files:
        assert _sha256(_stored_bytes(s3_storage, wf.storage_key)) == wf.sha256
    assert weights_publish(variant=variant, source_dir=source).uploaded == 0
    assert _publish_events(variant)[0].details["storage"] == "s3"


# The command


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("publish_weights", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_publishes_with_progress_and_a_summary(demo_variant, local_storage, demo_checkpoint):
    out, err = _run("--variant", "llama-demo-tiny", "--source", str(demo_checkpoint))

    for name in DEMO_FILES:
        wf = WeightFile.objects.get(variant=demo_variant, name=name)
        assert any(line.startswith(name) and wf.sha256 in line and "uploaded" in line for line in out.splitlines())
        assert name in err  # its progress bar
    assert "Published 5 files" in out and "to local storage: 5 uploaded, 0 unchanged." in out

    out, _ = _run("--variant", "llama-demo-tiny", "--source", str(demo_checkpoint))
    assert "0 uploaded, 5 unchanged." in out


def test_command_names_the_known_variants_for_an_unknown_one(llama_catalog, local_storage, demo_checkpoint):
    with pytest.raises(CommandError, match=r"Unknown variant 'llama-8b'.*llama-demo-tiny"):
        _run("--variant", "llama-8b", "--source", str(demo_checkpoint))


def test_command_explains_a_bad_folder(demo_variant, local_storage, tmp_path):
    with pytest.raises(CommandError, match="is not a folder"):
        _run("--variant", "llama-demo-tiny", "--source", str(tmp_path / "nowhere"))
    with pytest.raises(CommandError, match="params.json is missing; tokenizer.model is missing"):
        _run("--variant", "llama-demo-tiny", "--source", str(tmp_path))


def test_command_warns_when_the_source_checklist_disagrees(demo_variant, local_storage, checkpoint_copy):
    checklist = checkpoint_copy / "checklist.chk"
    params_md5 = hashlib.md5((checkpoint_copy / "params.json").read_bytes()).hexdigest()
    checklist.write_text(checklist.read_text().replace(params_md5, "0" * 32))

    _, err = _run("--variant", "llama-demo-tiny", "--source", str(checkpoint_copy))

    assert "params.json: md5" in err and "check the source copy" in err


# `make run`


def test_demo_weights_are_generated_once_and_published(llama_catalog, local_storage, tmp_path):
    folder = tmp_path / "demo-weights" / "llama-demo-tiny"

    first = demo_weights_publish(folder=folder)
    shard = (folder / "consolidated.00.pth").stat()
    second = demo_weights_publish(folder=folder)

    assert sorted(p.name for p in folder.iterdir()) == DEMO_FILES
    # Meta's five files, and the seven of transformers' layout under hf/, so make run shows both.
    assert (first.uploaded, second.uploaded, second.unchanged) == (12, 0, 12)
    assert (folder / "consolidated.00.pth").stat().st_mtime_ns == shard.st_mtime_ns  # not generated again
    names = [wf.name for wf in WeightFile.objects.filter(variant__slug="llama-demo-tiny")]
    assert [name for name in names if not name.startswith("hf/")] == DEMO_FILES
    assert "hf/model-00001-of-00001.safetensors" in names and len(names) == len(DEMO_FILES) + 7
    assert local_storage.stat("llama-demo-tiny/consolidated.01.pth") == (folder / "consolidated.01.pth").stat().st_size
