"""Inference engine speed against transformers' generate, and against this machine's memory bandwidth.

For a ~20M- and a ~300M-parameter LLaMA (random weights, LLaMA's 32,000-token vocabulary), both
engines run the same weights, with the same threads and dtype, in this one process. Ours runs twice:
eager, then with its decode step compiled (Transformer.compile_decode; the sandbox workers run eager for now):

- prefill tokens/s: a 128-token prompt, timed as generating 1 token;
- decode tokens/s at batch 1: (time for 1 + N new tokens - time for 1) / N, greedy, no early stop;
- roofline: bytes of weights read per decoded token (every matrix, the norms, one embedding row)
  times decode tokens/s, divided by the memory bandwidth this script measures first (the best of
  summing a 1 GiB tensor and a 1 GiB matrix-vector product in torch);
- our throughput (compiled) at batch 1, 4, 8 and 16 (generated tokens/s over all rows).

Compiling happens in the warm-up run of each batch size and is not timed.

Goals (inference engine issue): at 20M, decode at batch 1 at least 2x transformers; at 300M, at least
0.9 of the roofline; batch 8 at least 4x the tokens/s of batch 1.

    .venv/bin/python benches/engine.py [--device cpu|cuda] [--dtype float32|bfloat16|float16]
                                       [--threads N] [--repeats 3] [--quick]

Timings are the best of --repeats runs after a warm-up. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.llama.generate import SamplingParams, decode_steps  # noqa: E402
from inference.llama.hf_reference import to_hf  # noqa: E402
from inference.llama.model import ModelArgs, Transformer, scaled_init_  # noqa: E402

VOCAB = 32000
PREFILL_TOKENS = 128
BATCH_PROMPT_TOKENS = 16
BATCHES = (1, 4, 8, 16)
GOAL_SMALL_SPEEDUP = 2.0
GOAL_LARGE_ROOFLINE = 0.9
GOAL_BATCH8_SCALING = 4.0


@dataclass
class Size:
    label: str
    args: ModelArgs
    decode_tokens: int


SIZES = (
    Size("20M", ModelArgs(dim=256, n_layers=8, n_heads=8, vocab_size=VOCAB, multiple_of=256), 128),
    Size("300M", ModelArgs(dim=1024, n_layers=20, n_heads=16, vocab_size=VOCAB, multiple_of=256), 48),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, kernel selection, caches
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def memory_bandwidth(device: torch.device, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """Bytes/s of (summing a large tensor, a large matrix-vector product): each reads 1 GiB once."""
    elem = torch.tensor([], dtype=dtype).element_size()
    n = (1 << 30) // elem
    side = int(math.isqrt(n))
    # Random contents: a hypervisor may merge pages of equal contents, and torch.ones would then be
    # read from a few cached pages at an impossible speed.
    flat = torch.randn(n, device=device).to(dtype)
    sum_s = best_time(lambda: flat.sum(), repeats + 2, device)
    del flat
    matrix = torch.randn(side, side, device=device).to(dtype)
    vector = torch.randn(side, device=device).to(dtype)
    mv_s = best_time(lambda: torch.mv(matrix, vector), repeats + 2, device)
    bytes_mv = side * side * elem
    del matrix, vector
    return n * elem / sum_s, bytes_mv / mv_s


def weight_bytes_per_token(model: Transformer) -> int:
    """Every weight is read once per decode step except the embedding, of which one row is read."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.tok_embeddings.weight
    return total - emb.numel() * emb.element_size() + emb.shape[1] * emb.element_size()


def ours_run(model: Transformer, prompts: torch.Tensor, new_tokens: int) -> None:
    params = SamplingParams(max_new_tokens=new_tokens)
    for next_ids, *_ in decode_steps(model, prompts.tolist(), params):
        next_ids.tolist()  # the host sees every step, as a streaming server does


def hf_run(reference, prompts: torch.Tensor, new_tokens: int) -> None:
    with torch.inference_mode():
        reference.generate(
            prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            eos_token_id=None, pad_token_id=0, attention_mask=torch.ones_like(prompts),
        )


def throughput(run, prompts, new_tokens, repeats, device) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of run over these prompts."""
    first = best_time(lambda: run(prompts, 1), repeats, device)
    full = best_time(lambda: run(prompts, 1 + new_tokens), repeats, device)
    batch, length = prompts.shape
    return batch * length / first, batch * new_tokens / max(full - first, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the 20M model only, fewer tokens")
    opts = parser.parse_args()
    device, dtype = torch.device(opts.device), getattr(torch, opts.dtype)
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()

    print(f"torch {torch.__version__}, device {device}, dtype {opts.dtype}, threads {opts.threads}", flush=True)
    bw_sum, bw_mv = memory_bandwidth(device, dtype, opts.repeats)
    bandwidth = max(bw_sum, bw_mv)
    print(f"memory bandwidth: sum {bw_sum / 1e9:.1f} GB/s, matrix-vector {bw_mv / 1e9:.1f} GB/s", flush=True)

    rows, checks = [], []
    for size in SIZES[:1] if opts.quick else SIZES:
        torch.manual_seed(0)
        with torch.device(device):
            model = Transformer(size.args)
        scaled_init_(model, generator=torch.Generator(device=device).manual_seed(0))
        model = model.to(dtype).eval().requires_grad_(False)
        reference = to_hf(model, attn_implementation="sdpa")
        n_params = sum(p.numel() for p in model.parameters())
        per_token = weight_bytes_per_token(model)
        new_tokens = size.decode_tokens // (4 if opts.quick else 1)
        prompt = torch.randint(3, VOCAB, (1, PREFILL_TOKENS), device=device)
        print(f"{size.label}: {n_params / 1e6:.1f}M parameters, {per_token / 1e6:.0f} MB read per token", flush=True)

        result = {}
        for name, run in (("transformers", lambda p, n: hf_run(reference, p, n)),
                          ("ours, eager", lambda p, n: ours_run(model, p, n)),
                          ("ours", lambda p, n: ours_run(model, p, n))):
            if name == "ours":
                model.compile_decode()
            prefill, decode = throughput(run, prompt, new_tokens, opts.repeats, device)
            result[name] = decode
            rows.append((name, size.label, 1, prefill, decode, per_token * decode / bandwidth))
            print(f"  {name}: prefill {prefill:.0f} tok/s, decode {decode:.1f} tok/s", flush=True)
        del reference

        batch_decode = {}
        for batch in BATCHES[1:]:
            prompts = torch.randint(3, VOCAB, (batch, BATCH_PROMPT_TOKENS), device=device)
            _, decode = throughput(lambda p, n: ours_run(model, p, n), prompts, new_tokens, opts.repeats, device)
            batch_decode[batch] = decode
            rows.append(("ours", size.label, batch, None, decode, None))
            print(f"  ours batch {batch}: {decode:.1f} tok/s", flush=True)

        speedup = result["ours"] / result["transformers"]
        roofline = per_token * result["ours"] / bandwidth
        scaling = batch_decode[8] / result["ours"]
        if size.label == "20M":
            checks.append((f"20M decode vs transformers >= {GOAL_SMALL_SPEEDUP:.1f}x", f"{speedup:.2f}x",
                           speedup >= GOAL_SMALL_SPEEDUP))
        else:
            checks.append((f"300M decode roofline >= {GOAL_LARGE_ROOFLINE:.2f}", f"{roofline:.2f}",
                           roofline >= GOAL_LARGE_ROOFLINE))
        checks.append((f"{size.label} batch 8 vs batch 1 >= {GOAL_BATCH8_SCALING:.1f}x", f"{scaling:.2f}x",
                       scaling >= GOAL_BATCH8_SCALING))
        del model

    print()
    print("| engine | model | batch | prefill tok/s | decode tok/s | roofline |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label, batch, prefill, decode, roofline in rows:
        prefill_s = f"{prefill:,.0f}" if prefill is not None else ""
        roofline_s = f"{roofline:.2f}" if roofline is not None else ""
        print(f"| {name} | {label} | {batch} | {prefill_s} | {decode:,.1f} | {roofline_s} |")
    print()
    print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s (sum {bw_sum / 1e9:.1f}, matrix-vector {bw_mv / 1e9:.1f})")
    for goal, value, ok in checks:
        print(f"goal {goal}: {value} {'met' if ok else 'NOT met'}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
