import io
import json

from django.core.management import call_command


def run_generate(ckpt, *extra) -> str:
    out = io.StringIO()
    call_command("llama_generate", "--ckpt", str(ckpt), "--prompt", "Hello", "--max-new-tokens", "16",
                 "--temperature", "0", *extra, stdout=out)
    return out.getvalue()


def test_make_tiny_llama_then_generate_json_is_stable(tmp_path):
    ckpt = tmp_path / "tiny"
    call_command("make_tiny_llama", str(ckpt), "--shards", "2", stdout=io.StringIO())
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "checklist.chk", "consolidated.00.pth", "consolidated.01.pth", "params.json", "tokenizer.model",
    ]
    first = json.loads(run_generate(ckpt, "--json"))
    assert set(first) == {"prompt_tokens", "tokens", "text"}
    assert first["prompt_tokens"][0] == 1
    assert 0 < len(first["tokens"]) <= 16
    assert json.loads(run_generate(ckpt, "--json")) == first
    assert run_generate(ckpt).strip() == first["text"].strip()


def test_seeded_sampling_from_the_command_is_repeatable(tiny_ckpt):
    args = ("--temperature", "0.9", "--top-p", "0.9", "--seed", "7", "--json")
    out = io.StringIO()
    call_command("llama_generate", "--ckpt", str(tiny_ckpt), "--prompt", "Hi", "--max-new-tokens", "8", *args,
                 stdout=out)
    again = io.StringIO()
    call_command("llama_generate", "--ckpt", str(tiny_ckpt), "--prompt", "Hi", "--max-new-tokens", "8", *args,
                 stdout=again)
    assert json.loads(out.getvalue()) == json.loads(again.getvalue())
