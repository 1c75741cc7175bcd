"""lm-evaluation-harness, as a researcher runs it, against a live portal and a real sandbox worker:
`lm_eval --model local-completions ... tokenizer_backend=remote` with nothing of the model on the
client's side, on a multiple-choice task, a generate_until task and a perplexity task defined in
local files (no download). Every item must equal lm-eval's own `hf` model on the same weights in
transformers' layout: log-likelihoods within 1e-4 (float32), the same accuracy, the same text.

The run also meets the sandbox's concurrency limit (one request at a time, lm-eval sending three):
refused with 429 and Retry-After, lm-eval retries, and the run completes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from inference.llama.checkpoint import load_llama
from inference.llama.hf_reference import hf_checkpoint_save
from inference.sandbox.models import JobStatus, SandboxJob, SandboxQuota

pytestmark = pytest.mark.real_worker

MODEL = "llama-demo-tiny"
TOL = 1e-4
LM_EVAL_SECONDS = 400

QUESTIONS = [
    ("The capital of France is", ["Paris", "Madrid", "Rome", "Berlin"], 0),
    ("Water freezes at zero degrees", ["Celsius", "Kelvin", "Fahrenheit"], 0),
    ("Once upon a time there was a", ["king", "river", "number", "small village"], 1),
    ("The sun rises in the", ["east", "west"], 0),
    ("Two plus two is", ["four", "five", "twenty two"], 0),
    ("A cat says", ["meow", "woof", "moo"], 0),
    ("The opposite of hot is", ["cold", "warm", "fire"], 0),
    ("Birds can", ["fly", "swim", "read"], 0),
]
PROMPTS = [
    ("Q: What is the capital of France?\nA:", "Paris"),
    ("Once upon a time", "there"),
    ("The river ran slow and brown past the", "mill"),
    ("1, 2, 3, 4,", "5"),
    ("Hello, my name is", "Ada"),
]
TEXTS = [
    "The river ran slow and brown past the mill, and the miller's daughter watched it from the bridge.",
    "Numbers: 3.14159 and 2.71828 are famous constants.",
    "ünïcode text, 日本語, and an emoji 🙂 in one line.",
]


def _task_files(root: Path) -> Path:
    """Three tasks over JSON lines files, as a researcher defines their own."""
    data = root / "data"
    data.mkdir(parents=True)
    with open(data / "mc.jsonl", "w") as out:
        for question, choices, answer in QUESTIONS:
            out.write(json.dumps({"question": question, "choices": choices, "answer": answer}) + "\n")
    with open(data / "gen.jsonl", "w") as out:
        for prompt, target in PROMPTS:
            out.write(json.dumps({"prompt": prompt, "target": target}) + "\n")
    with open(data / "ppl.jsonl", "w") as out:
        for text in TEXTS:
            out.write(json.dumps({"text": text}) + "\n")
    tasks = root / "tasks"
    tasks.mkdir()

    def dataset(name: str) -> str:
        return f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data / name}\ntest_split: test\n"

    (tasks / "portal_mc.yaml").write_text(
        "task: portal_mc\n" + dataset("mc.jsonl") + "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: choices\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n"
    )
    (tasks / "portal_gen.yaml").write_text(
        "task: portal_gen\n" + dataset("gen.jsonl") + "output_type: generate_until\n"
        'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
        'generation_kwargs:\n  until: ["\\n\\n", "."]\n  max_gen_toks: 12\n  do_sample: false\n  temperature: 0\n'
        "metric_list:\n  - metric: exact_match\n"
    )
    (tasks / "portal_ppl.yaml").write_text(
        "task: portal_ppl\n" + dataset("ppl.jsonl") + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n"
    )
    return tasks


@pytest.fixture(scope="module")
def eval_checkpoint(tmp_path_factory):
    """The demo model with the output rows of its byte-fallback pieces, <unk> and <s> zeroed, so
    greedy decoding never picks one (as a trained LLaMA writes none of them). A random model's text
    is otherwise mostly loose bytes that form no UTF-8, which SentencePiece (ours, Meta's) and
    transformers' decoder write differently (transformers replaces a whole run of such bytes, valid
    ones too, by U+FFFD; it drops <unk>, SentencePiece writes " ⁇ "); without them the texts
    compare like for like. Decoding itself is compared in tests/inference/test_llama_tokenizer.py."""
    from access.catalog.services import TINY_DEMO
    from inference.llama.checkpoint import checklist_write, tiny_llama_make
    from inference.llama.tokenizer import Tokenizer

    folder = tiny_llama_make(tmp_path_factory.mktemp("eval-checkpoint") / "llama-demo-tiny", **TINY_DEMO)
    tokenizer = Tokenizer(folder / "tokenizer.model")
    shard = torch.load(folder / "consolidated.00.pth")
    never_written = [i for i in range(tokenizer.n_words) if tokenizer.sp.is_byte(i)] + [0, tokenizer.bos_id]
    shard["output.weight"][never_written] = 0
    torch.save(shard, folder / "consolidated.00.pth")
    checklist_write(folder)
    return folder


@pytest.fixture
def eval_model(demo_grant, eval_checkpoint):
    """The demo variant serving eval_checkpoint's weights."""
    from access.distribution.publishing import weights_publish

    weights_publish(variant=demo_grant.variant, source_dir=eval_checkpoint)
    return eval_checkpoint


def _lm_eval(args: list[str], out: Path, env: dict, log: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lm_eval", "run", *args, "--tasks", "portal_mc,portal_gen,portal_ppl",
               "--log_samples", "--output_path", str(out), "--seed", "1234"]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=LM_EVAL_SECONDS)
    return process


def _samples(out: Path) -> dict[str, list[dict]]:
    """Each task's logged items (lm-eval's samples_<task>_<time>.jsonl), by doc_id."""
    found = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
        found[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return found


def _results(out: Path) -> dict:
    (path,) = out.rglob("results_*.json")
    return json.loads(path.read_text())["results"]


@pytest.fixture
def lm_eval_env(tmp_path):
    return {
        **os.environ,
        # Nothing leaves this machine: the datasets are local files, the hub is never asked.
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def test_lm_eval_local_completions_equals_its_hf_model_item_for_item(
    live_server, demo_grant, eval_model, researcher, api_key, tmp_path, lm_eval_env, sandbox_worker
):
    tasks = _task_files(tmp_path / "eval")
    token = api_key(researcher)
    # One request at a time for this researcher, while lm-eval sends three: some are refused (429,
    # Retry-After) and retried.
    SandboxQuota.objects.create(user=researcher, concurrent_requests=1)

    # The reference: lm-eval's hf model on the same weights in transformers' layout, in float32,
    # without a bos (lm-eval's remote tokenizer adds none), run beside the API run.
    hf_dir = hf_checkpoint_save(
        load_llama(eval_model, dtype=torch.float32, device="cpu"), eval_model / "tokenizer.model",
        tmp_path / "hf-model",
    )  # fmt: skip
    hf_out, api_out = tmp_path / "hf-out", tmp_path / "api-out"
    hf_run: dict = {}
    reference = threading.Thread(target=lambda: hf_run.update(result=_lm_eval(
        ["--model", "hf", "--model_args", f"pretrained={hf_dir},dtype=float32,add_bos_token=False", "--device", "cpu",
         "--include_path", str(tasks), "--batch_size", "1"],
        hf_out, lm_eval_env, tmp_path / "hf.log",
    )))  # fmt: skip
    reference.start()

    base_url = f"{live_server.url}/sandbox/{MODEL}/v1/completions"
    api = _lm_eval(
        ["--model", "local-completions", "--model_args",
         f"model={MODEL},base_url={base_url},tokenizer_backend=remote,auth_token={token},"
         "num_concurrent=3,max_retries=10,max_length=1024",
         "--include_path", str(tasks), "--batch_size", "4"],
        api_out, {**lm_eval_env, "OPENAI_API_KEY": token}, tmp_path / "api.log",
    )  # fmt: skip
    reference.join(LM_EVAL_SECONDS)
    api_log = (tmp_path / "api.log").read_text(errors="replace")
    assert api.returncode == 0, api_log[-6000:] + sandbox_worker.log()[-3000:]
    assert hf_run["result"].returncode == 0, (tmp_path / "hf.log").read_text(errors="replace")[-6000:]

    ours, theirs = _samples(api_out), _samples(hf_out)
    assert sorted(ours) == sorted(theirs) == ["portal_gen", "portal_mc", "portal_ppl"]

    # Multiple choice: every choice's log-likelihood, and whether it is the greedy continuation.
    assert len(ours["portal_mc"]) == len(QUESTIONS)
    for a, b in zip(ours["portal_mc"], theirs["portal_mc"], strict=True):
        ours_ll = [float(resp[0][0]) for resp in a["resps"]]
        theirs_ll = [float(resp[0][0]) for resp in b["resps"]]
        assert max(abs(x - y) for x, y in zip(ours_ll, theirs_ll, strict=True)) < TOL, (a["doc"], ours_ll, theirs_ll)
        assert [resp[0][1] for resp in a["resps"]] == [resp[0][1] for resp in b["resps"]]
        assert a["acc"] == b["acc"]
    # Perplexity: each text's rolling log-likelihood.
    for a, b in zip(ours["portal_ppl"], theirs["portal_ppl"], strict=True):
        assert abs(float(a["resps"][0][0]) - float(b["resps"][0][0])) < TOL * 10, (a["resps"], b["resps"])
    # Generation: the same text, item for item, and some of it not empty.
    ours_text = [a["resps"][0][0] for a in ours["portal_gen"]]
    assert ours_text == [b["resps"][0][0] for b in theirs["portal_gen"]]
    assert any(text.strip() for text in ours_text)

    # The same scores overall.
    ours_results, theirs_results = _results(api_out), _results(hf_out)
    assert ours_results["portal_mc"]["acc,none"] == theirs_results["portal_mc"]["acc,none"]
    assert ours_results["portal_gen"]["exact_match,none"] == theirs_results["portal_gen"]["exact_match,none"]
    assert ours_results["portal_ppl"]["bits_per_byte,none"] == pytest.approx(
        theirs_results["portal_ppl"]["bits_per_byte,none"], rel=1e-5
    )

    # Everything ran through the grant, in scored batches; the concurrency limit was met and retried.
    jobs = SandboxJob.objects.filter(user=researcher)
    assert jobs.exists() and not jobs.exclude(status=JobStatus.SUCCEEDED).exists()
    assert set(jobs.values_list("grant", flat=True)) == {demo_grant.pk}
    assert jobs.filter(params__echo=True, params__max_tokens=1).exists()
    assert "429" in api_log
