"""What the engine itself answers, for tests that compare the sandbox with it."""

from __future__ import annotations

import io
import json

from django.core.management import call_command


def llama_generate_json(checkpoint, prompt: str, max_new_tokens: int) -> dict:
    """``llama_generate --json`` on the checkpoint: greedy prompt_tokens, tokens and text."""
    out = io.StringIO()
    call_command(
        "llama_generate", "--ckpt", str(checkpoint), "--prompt", prompt, "--max-new-tokens", str(max_new_tokens),
        "--json", stdout=out,
    )  # fmt: skip
    return json.loads(out.getvalue().strip().splitlines()[-1])
