"""Each sandbox model's tokenizer in the web processes: what the remote-tokenizer endpoints serve
(``/sandbox/<slug>/tokenize``, ``/detokenize``, ``/tokenizer_info``) and what counts a request's
prompt tokens at admission, so the daily quota holds scored prompts too. Only the published
tokenizer.model is fetched (``checkpoints.tokenizer_fetch``), never the weights.

Text is read as the sandbox worker reads it (``Tokenizer.encode(special=True)``): the names of the
special tokens (``<s>``, ``</s>``, ``<unk>``) are those tokens, as in transformers' LlamaTokenizer.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from inference.llama.tokenizer import Tokenizer
from inference.sandbox.checkpoints import CheckpointFetchError, tokenizer_fetch

# A process looks again which tokenizer.model is published (new weights?) at most this often.
RECHECK_SECONDS = 10.0

_loaded: dict[int, tuple[float, str, Tokenizer]] = {}  # variant id -> (looked at, file, tokenizer)
_lock = threading.Lock()
_fetching = threading.Lock()


def sandbox_tokenizer(variant) -> Tokenizer:
    """The variant's published tokenizer; raises CheckpointFetchError when none is published or it
    cannot be fetched."""
    now = time.monotonic()
    with _lock:
        cached = _loaded.get(variant.pk)
    if cached is not None and now - cached[0] < RECHECK_SECONDS:
        return cached[2]
    with _fetching:  # one thread looks and fetches at a time; the others then find its result
        with _lock:
            cached = _loaded.get(variant.pk)
        if cached is not None and time.monotonic() - cached[0] < RECHECK_SECONDS:
            return cached[2]
        path = tokenizer_fetch(variant, settings.SANDBOX_CACHE_DIR)
        if cached is not None and cached[1] == str(path):
            tokenizer = cached[2]
        else:
            try:
                tokenizer = Tokenizer(path)
            except (OSError, RuntimeError) as exc:  # SentencePiece's error for a file it cannot read
                raise CheckpointFetchError(f"{variant.slug}: tokenizer.model could not be read: {exc}") from exc
        with _lock:
            _loaded[variant.pk] = (time.monotonic(), str(path), tokenizer)
    return tokenizer


def prompt_ids(tokenizer: Tokenizer, prompt: str | tuple[int, ...] | list[int]) -> list[int]:
    """A prompt's ids as the worker runs them: text gets bos first (as llama_generate does); ids
    are used exactly as sent."""
    return tokenizer.encode(prompt, special=True) if isinstance(prompt, str) else list(prompt)


def sandbox_tokenizers_forget() -> None:
    """Drop every loaded tokenizer (tests that publish other weights under the same ids)."""
    with _lock:
        _loaded.clear()
