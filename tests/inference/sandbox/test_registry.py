"""The models a sandbox worker keeps loaded: reused between jobs, the least recently used evicted
past the memory bound, in the precision the device calls for."""

from __future__ import annotations

import pytest
import torch

from inference.llama.checkpoint import load_llama, tiny_llama_make
from inference.sandbox.registry import ModelRegistry, sandbox_dtype, weight_bytes


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    return {
        name: tiny_llama_make(root / name, dim=32, n_layers=1, n_heads=2, vocab_size=512, seed=seed)
        for name, seed in (("a", 1), ("b", 2), ("c", 3))
    }


def _counting_loader(loads: list):
    def loader(folder, **kwargs):
        loads.append(folder.name)
        return load_llama(folder, **kwargs)

    return loader


def test_a_model_is_loaded_once_and_reused(checkpoints):
    loads = []
    registry = ModelRegistry(max_bytes=1 << 30, device="cpu", loader=_counting_loader(loads))

    first = registry.get("a", checkpoints["a"])
    again = registry.get("a", checkpoints["a"])

    assert again is first and loads == ["a"]
    assert first.tokenizer.encode("Hello") and first.weight_bytes == weight_bytes(first.model) > 0
    assert next(first.model.parameters()).dtype == torch.float32


def test_the_least_recently_used_model_goes_first_past_the_bound(checkpoints):
    one = weight_bytes(load_llama(checkpoints["a"], device="cpu"))
    loads = []
    registry = ModelRegistry(max_bytes=2 * one, device="cpu", loader=_counting_loader(loads))

    registry.get("a", checkpoints["a"])
    registry.get("b", checkpoints["b"])
    registry.get("a", checkpoints["a"])  # a is now the most recently used
    registry.get("c", checkpoints["c"])

    assert registry.keys() == ["a", "c"] and registry.loaded_bytes() <= 2 * one
    registry.get("b", checkpoints["b"])
    assert loads == ["a", "b", "c", "b"] and registry.keys() == ["c", "b"]


def test_a_model_larger_than_the_bound_still_loads_alone(checkpoints):
    registry = ModelRegistry(max_bytes=1, device="cpu")

    registry.get("a", checkpoints["a"])
    registry.get("b", checkpoints["b"])

    assert registry.keys() == ["b"]


def test_the_precision_follows_the_device():
    assert sandbox_dtype(torch.device("cpu")) == torch.float32
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert sandbox_dtype(torch.device("cuda")) == expected
