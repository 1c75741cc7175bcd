import json

import pytest
import torch

from inference.llama.checkpoint import checklist_verify, load_llama, tiny_llama_make
from inference.llama.errors import CheckpointError


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_sharded_checkpoint_loads_to_exactly_the_one_shard_tensors(tmp_path, shards):
    # Eight heads so that eight ranks each get whole heads, as in LLaMA-65B.
    single = tiny_llama_make(tmp_path / "s1", n_heads=8, n_shards=1, seed=5)
    sharded = tiny_llama_make(tmp_path / f"s{shards}", n_heads=8, n_shards=shards, seed=5)
    assert len(list(sharded.glob("consolidated.*.pth"))) == shards
    one = load_llama(single, device="cpu").state_dict()
    many = load_llama(sharded, device="cpu").state_dict()
    assert one.keys() == many.keys()
    for key in one:
        assert torch.equal(one[key], many[key]), key


def test_shards_hold_the_meta_split_layout(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c", n_shards=2)
    shard = torch.load(ckpt / "consolidated.01.pth", weights_only=True)
    assert shard["layers.0.attention.wq.weight"].shape == (32, 64)  # column-parallel: rows split
    assert shard["layers.0.attention.wo.weight"].shape == (64, 32)  # row-parallel: columns split
    assert shard["tok_embeddings.weight"].shape == (512, 32)
    assert shard["output.weight"].shape == (256, 64)
    assert shard["norm.weight"].shape == (64,)
    assert "rope.freqs" in shard
    assert json.loads((ckpt / "params.json").read_text()) == {
        "dim": 64, "multiple_of": 32, "n_heads": 4, "n_layers": 2, "norm_eps": 1e-6, "vocab_size": 512,
    }


def test_checklist_covers_every_file_and_verifies(tiny_ckpt):
    names = {line.split()[1] for line in (tiny_ckpt / "checklist.chk").read_text().splitlines()}
    assert names == {"params.json", "consolidated.00.pth", "tokenizer.model"}
    checklist_verify(tiny_ckpt)
    load_llama(tiny_ckpt, device="cpu", verify=True)


def test_corrupted_shard_fails_checksum_verification(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c")
    data = bytearray((ckpt / "consolidated.00.pth").read_bytes())
    data[-100] ^= 0xFF
    (ckpt / "consolidated.00.pth").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its md5.*download it again"):
        load_llama(ckpt, device="cpu", verify=True)


def test_missing_shard_is_reported(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c", n_shards=4)
    (ckpt / "consolidated.02.pth").unlink()
    with pytest.raises(CheckpointError, match="a shard is missing"):
        load_llama(ckpt, device="cpu")
    with pytest.raises(CheckpointError, match="listed in checklist.chk but missing"):
        load_llama(ckpt, device="cpu", verify=True)


def test_missing_params_json_is_reported(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c")
    (ckpt / "params.json").unlink()
    with pytest.raises(CheckpointError, match="params.json is missing"):
        load_llama(ckpt, device="cpu")


def test_shape_mismatch_with_params_is_reported(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c")
    params = json.loads((ckpt / "params.json").read_text())
    (ckpt / "params.json").write_text(json.dumps(params | {"multiple_of": 128}))
    with pytest.raises(CheckpointError, match="params.json implies"):
        load_llama(ckpt, device="cpu")


def test_shard_count_that_does_not_divide_is_reported(tmp_path):
    ckpt = tiny_llama_make(tmp_path / "c", n_shards=2)
    params = json.loads((ckpt / "params.json").read_text())
    (ckpt / "params.json").write_text(json.dumps(params | {"n_heads": 3, "dim": 63}))
    with pytest.raises(CheckpointError, match="2 shards do not divide"):
        load_llama(ckpt, device="cpu")
    with pytest.raises(CheckpointError, match="do not divide"):
        tiny_llama_make(tmp_path / "d", n_shards=3)


def test_float16_is_refused_on_cpu_and_bfloat16_loads(tiny_ckpt):
    with pytest.raises(CheckpointError, match="CUDA only"):
        load_llama(tiny_ckpt, device="cpu", dtype=torch.float16)
    assert load_llama(tiny_ckpt, device="cpu", dtype=torch.bfloat16).output.weight.dtype == torch.bfloat16


def test_same_seed_gives_the_same_files(tmp_path):
    a = tiny_llama_make(tmp_path / "a", seed=3)
    b = tiny_llama_make(tmp_path / "b", seed=3)
    assert (a / "checklist.chk").read_text() == (b / "checklist.chk").read_text()
