"""The models a sandbox worker keeps loaded between jobs.

Loading a checkpoint costs far more than a job, so a worker keeps the models it has loaded and
evicts the least recently used once their weights pass ``max_bytes`` (the worker's memory
setting). A model larger than ``max_bytes`` on its own is still loaded, alone: a worker exists to
run the models it is sent. On CUDA models run in bfloat16 where the card supports it, else
float16; on the CPU in float32 (CPU half-precision matrix products are slow and inexact).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.llama.checkpoint import load_llama, pick_device
from inference.llama.model import Transformer
from inference.llama.tokenizer import Tokenizer


def sandbox_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class LoadedModel:
    key: str
    model: Transformer
    tokenizer: Tokenizer
    weight_bytes: int


def weight_bytes(model: Transformer) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in model.parameters())


class ModelRegistry:
    """Loaded models by key (a variant and its published file set), least recently used first out."""

    def __init__(self, *, max_bytes: int, device: str | None = None, loader: Callable[..., Transformer] = load_llama):
        self.max_bytes = max_bytes
        self.device = pick_device(device)
        self.dtype = sandbox_dtype(self.device)
        self._loader = loader
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, folder: Path) -> LoadedModel:
        """The model of ``key``, loaded from ``folder`` (params, shards, tokenizer.model) if it is not
        loaded yet."""
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
            model = self._loader(folder, dtype=self.dtype, device=str(self.device))
            loaded = LoadedModel(key, model, Tokenizer(Path(folder) / "tokenizer.model"), weight_bytes(model))
            self._evict_for(loaded.weight_bytes)
            self._models[key] = loaded
            return loaded

    def _evict_for(self, incoming: int) -> None:
        while self._models and self.loaded_bytes() + incoming > self.max_bytes:
            _, evicted = self._models.popitem(last=False)
            del evicted
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the evicted models' memory back before the next one loads

    def loaded_bytes(self) -> int:
        return sum(loaded.weight_bytes for loaded in self._models.values())

    def keys(self) -> list[str]:
        """Loaded keys, least recently used first."""
        return list(self._models)
