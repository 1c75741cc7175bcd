"""Correctness of the inference engine on a GPU, against the CPU in float32 as the reference.

For a random 2-shard tiny checkpoint (make_tiny_llama's code path), on the device in float32,
bfloat16 and float16: the largest logit difference from the CPU's float32 logits, whether greedy
tokens equal the CPU's, and whether the compiled decode step (a CUDA graph on GPUs) gives the
eager step's tokens; in float32 also transformers' LlamaForCausalLM on the device. Half precision
is judged on logits only: its greedy tokens may part from float32's after a near-tie.

    python benches/cuda_check.py [--device cuda]

Exits 1 if a check fails. Needs torch, sentencepiece and transformers; not Django. Not part of
the test suite (CI has no GPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.llama.checkpoint import load_llama, tiny_llama_make  # noqa: E402
from inference.llama.generate import SamplingParams, generate  # noqa: E402
from inference.llama.hf_reference import to_hf  # noqa: E402
from inference.llama.tokenizer import Tokenizer  # noqa: E402

PROMPTS = ["The river ran slow and brown past the mill", "Weights are released"]
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.15, torch.float16: 0.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    opts = parser.parse_args()
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here: run this on a GPU machine.")
    device = torch.device(opts.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {name}", flush=True)

    ckpt = tiny_llama_make(Path(tempfile.mkdtemp()) / "tiny", seed=0, n_shards=2)
    tok = Tokenizer(ckpt / "tokenizer.model")
    params = SamplingParams(max_new_tokens=32)
    ids = tok.encode(PROMPTS[0])

    def logits(model) -> torch.Tensor:
        model.setup_caches(1, len(ids))
        at = model.output.weight.device
        positions = torch.arange(len(ids), device=at).unsqueeze(0)
        return model(torch.tensor([ids], device=at), positions)[0].float().cpu()

    cpu = load_llama(ckpt, dtype=torch.float32, device="cpu", verify=True, max_seq_len=128)
    reference_tokens = [c.tokens for c in generate(cpu, tok, PROMPTS, params)]
    reference_logits = logits(cpu)

    rows, ok = [], True
    for dtype, tolerance in TOLERANCE.items():
        if dtype == torch.float16 and device.type != "cuda":
            continue  # float16 is for CUDA only (load_llama refuses it elsewhere)
        model = load_llama(ckpt, dtype=dtype, device=opts.device, verify=True, max_seq_len=128)
        diff = (logits(model) - reference_logits).abs().max().item()
        eager = [c.tokens for c in generate(model, tok, PROMPTS, params)]
        started = time.perf_counter()
        model.compile_decode()
        compiled = [c.tokens for c in generate(model, tok, PROMPTS, params)]
        seconds = time.perf_counter() - started
        hf_diff = None
        if dtype == torch.float32:
            with torch.no_grad():
                hf_logits = to_hf(model)(torch.tensor([ids], device=device)).logits[0].float().cpu()
            hf_diff = (hf_logits - reference_logits).abs().max().item()
            ok &= eager == reference_tokens and compiled == eager and hf_diff < tolerance
        ok &= diff < tolerance
        rows.append((str(dtype).removeprefix("torch."), diff, tolerance, eager == reference_tokens,
                     compiled == eager, seconds, hf_diff))
        del model

    print()
    print("| dtype | max logit diff vs CPU float32 | tolerance | greedy = CPU | compiled = eager | compile + run s "
          "| transformers here vs CPU |")
    print("|---|---:|---:|---|---|---:|---:|")
    for dtype, diff, tolerance, same, compiled_same, seconds, hf_diff in rows:
        hf = f"{hf_diff:.1e}" if hf_diff is not None else ""
        print(f"| {dtype} | {diff:.1e} | {tolerance:g} | {same} | {compiled_same} | {seconds:.1f} | {hf} |")
    print(f"\nCUDA check {'passed' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
