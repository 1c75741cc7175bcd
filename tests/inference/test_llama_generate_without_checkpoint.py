"""`manage.py llama_generate` pointed at a folder without a checkpoint: one line that says so and
how to make one, a non-zero exit status, no traceback."""

from __future__ import annotations

import subprocess
import sys

from django.conf import settings


def _generate(ckpt) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "llama_generate", "--ckpt", str(ckpt), "--prompt", "Hi", "--max-new-tokens", "2"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_empty_folder_is_named_as_holding_no_checkpoint(tmp_path):
    result = _generate(tmp_path)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"CommandError: No checkpoint in {tmp_path}: expected params.json and consolidated.*.pth "
        f"(make one with manage.py make_tiny_llama {tmp_path})"
    ]


def test_a_folder_with_params_but_no_weights_is_named_too(tmp_path):
    (tmp_path / "params.json").write_text('{"dim": 64}')

    result = _generate(tmp_path)

    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"CommandError: No checkpoint in {tmp_path}:")
    assert "Traceback" not in result.stderr


def test_a_missing_folder_says_it_is_not_a_folder(tmp_path):
    result = _generate(tmp_path / "nowhere")

    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"CommandError: {tmp_path / 'nowhere'} is not a folder:")
    assert len(result.stderr.strip().splitlines()) == 1
