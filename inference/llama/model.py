"""LLaMA-1 as Meta published it (facebookresearch/llama v1 model.py), with a gpt-fast style static KV cache.

Differences from Meta's file, all numerically neutral: no model-parallel layers (shards are merged
on load), per-row positions so prompts of different lengths share a batch, attention over the whole
preallocated cache with a position mask instead of slicing it (no host sync, no reallocation), and
a decode step that torch.compile can capture whole (see compile_decode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_MAX_SEQ_LEN = 2048  # LLaMA-1's training context


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    vocab_size: int = -1  # Meta's params.json says -1; the loader takes it from the embedding
    multiple_of: int = 256
    norm_eps: float = 1e-6
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """SwiGLU width: two thirds of 4*dim (same parameter count as a GELU MLP), rounded up to multiple_of."""
        hidden = int(2 * (4 * self.dim) / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight.T, the only matrix product in the model.

    Decoding one sequence multiplies one row by every weight matrix, which is bound by memory
    bandwidth. On the CPU the BLAS call for a one-row product reaches only about half of it (see
    benches/engine.py), while a multiply-and-sum, which Inductor fuses into one vectorised pass over
    the weights, reaches all of it. Eager mode would materialise the product, so the rewrite is used
    only while torch.compile traces.
    """
    if torch.compiler.is_compiling() and x.device.type == "cpu" and x.numel() == x.shape[-1]:
        return (x.unsqueeze(-2) * weight).sum(-1)
    return F.linear(x, weight)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 as Meta does, so half-precision runs keep the same statistics.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def precompute_freqs_cis(head_dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotations e^(i * pos * theta^(-2k/head_dim)) as (cos, sin) pairs, shape (end, head_dim // 2, 2).

    Meta keeps them as complex64; real pairs give the same numbers and let torch.compile fuse the
    rotation (Inductor generates no code for complex operators).
    """
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(end, dtype=torch.float32), freqs)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    # x: (B, T, H, D); freqs_cis: (B, T, D/2, 2). Meta's convention: adjacent pairs (x0, x1) are one
    # complex number x0 + i*x1, multiplied by cos + i*sin.
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    cos, sin = freqs_cis[..., 0].unsqueeze(2), freqs_cis[..., 1].unsqueeze(2)
    out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1).flatten(3)
    return out.type_as(x)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.head_dim = args.head_dim
        self.wq = nn.Linear(args.dim, args.dim, bias=False)
        self.wk = nn.Linear(args.dim, args.dim, bias=False)
        self.wv = nn.Linear(args.dim, args.dim, bias=False)
        self.wo = nn.Linear(args.dim, args.dim, bias=False)
        self.cache_k: torch.Tensor | None = None  # (B_max, S_max, H, D), set by Transformer.setup_caches
        self.cache_v: torch.Tensor | None = None

    def forward(self, x, freqs_cis, input_pos, mask):
        bsz, seqlen, _ = x.shape
        q = linear(x, self.wq.weight).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = linear(x, self.wk.weight).view(bsz, seqlen, self.n_heads, self.head_dim)
        v = linear(x, self.wv.weight).view(bsz, seqlen, self.n_heads, self.head_dim)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)

        # Write this step's keys/values at each row's own positions; the cache never moves or grows.
        rows = torch.arange(bsz, device=x.device).unsqueeze(1)
        cache_k, cache_v = self.cache_k[:bsz], self.cache_v[:bsz]
        cache_k[rows, input_pos] = k
        cache_v[rows, input_pos] = v

        # (B, H, T, D) x (B, H, S, D); slots after a row's position are masked, whatever they hold.
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), cache_k.transpose(1, 2), cache_v.transpose(1, 2), attn_mask=mask
        )
        return linear(out.transpose(1, 2).reshape(bsz, seqlen, -1), self.wo.weight)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):
        return linear(F.silu(linear(x, self.w1.weight)) * linear(x, self.w3.weight), self.w2.weight)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x, freqs_cis, input_pos, mask):
        h = x + self.attention(self.attention_norm(x), freqs_cis, input_pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.freqs_cis: torch.Tensor | None = None
        self.cache_positions: torch.Tensor | None = None
        self.max_batch_size = 0
        self.max_seq_len = 0
        self.decode = self.forward  # the one-token step; compile_decode swaps in a compiled one
        self.decode_compiled = False

    def setup_caches(self, max_batch_size: int, max_seq_len: int) -> None:
        """Preallocate the KV cache for up to max_batch_size rows of max_seq_len positions.

        A compiled decode step keeps a cache that is large enough (a new shape would mean a new
        compilation); eager mode reallocates to the exact shape so attention reads no spare slots.
        """
        if max_seq_len > self.args.max_seq_len:
            raise ValueError(
                f"{max_seq_len} positions requested but the model supports {self.args.max_seq_len}; "
                "shorten the prompt or ask for fewer new tokens."
            )
        if (max_batch_size, max_seq_len) == (self.max_batch_size, self.max_seq_len):
            return
        if self.decode_compiled and max_batch_size <= self.max_batch_size and max_seq_len <= self.max_seq_len:
            return
        weight = self.output.weight
        shape = (max_batch_size, max_seq_len, self.args.n_heads, self.args.head_dim)
        for layer in self.layers:
            layer.attention.cache_k = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
            layer.attention.cache_v = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.freqs_cis = precompute_freqs_cis(self.args.head_dim, max_seq_len).to(weight.device)
        self.cache_positions = torch.arange(max_seq_len, device=weight.device)
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len

    def compile_decode(self, **options) -> None:
        """Use torch.compile for the one-token decode step: one graph, no Python per layer.

        Shapes are static, so the first step at each batch size (and cache size) compiles, which
        takes seconds to a minute; later steps reuse it. Needs a C++ compiler on the CPU and Triton on
        CUDA, where the step is also captured as a CUDA graph (mode "reduce-overhead", unless options
        name another). Prefill stays eager: its shape changes with every prompt.
        """
        self.requires_grad_(False)  # graphs without autograd; also what makes the weights constants
        on_cuda = self.output.weight.is_cuda
        if on_cuda:
            # A decode step is a few hundred small kernels: replaying them as one CUDA graph removes
            # the launch overhead that otherwise bounds batch-1 decoding on a GPU.
            options.setdefault("mode", "reduce-overhead")
        compiled = torch.compile(self.forward, fullgraph=True, dynamic=False, **options)
        if on_cuda and options["mode"] == "reduce-overhead":

            def decode(*args, **kwargs):
                # Each call is a new graph step; the logits are copied out of the graph's output
                # buffer, which the next step overwrites.
                torch.compiler.cudagraph_mark_step_begin()
                return compiled(*args, **kwargs).clone()

            self.decode = decode
        else:
            self.decode = compiled
        self.decode_compiled = True

    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor, logits_at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) in float32 for tokens (B, T) at positions input_pos (B, T).

        Callers run it under torch.no_grad(); load_llama returns a model without gradients anyway.

        With logits_at (B,), only the hidden state at that index of each row goes through the output
        layer, giving (B, V): prefill needs just the last prompt token of each row.
        """
        h = self.hidden(tokens, input_pos)
        if logits_at is not None:
            h = h[torch.arange(h.shape[0], device=h.device), logits_at]
        return self.logits(h)

    def hidden(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        """The last layer's states (B, T, dim) for tokens (B, T) at positions input_pos (B, T),
        before the final norm; each position's keys and values are written to the cache."""
        if self.freqs_cis is None:
            self.setup_caches(tokens.shape[0], tokens.shape[1])
        h = self.tok_embeddings(tokens)
        freqs_cis = self.freqs_cis[input_pos]
        # (B, 1, T, S): a query at position p sees cache slots 0..p of its own row.
        mask = (self.cache_positions <= input_pos.unsqueeze(-1)).unsqueeze(1)
        for layer in self.layers:
            h = layer(h, freqs_cis, input_pos, mask)
        return h

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer over states from hidden(): logits in float32, one per state."""
        return linear(self.norm(h), self.output.weight).float()


def scaled_init_(model: Transformer, *, generator: torch.Generator) -> None:
    """Random weights with unit-scale activations, so an untrained model still has clear argmaxes.

    The numbers are drawn on the generator's device (a CUDA generator draws on the GPU)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator, device=generator.device)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name == "tok_embeddings.weight":
                p.copy_(noise)
            else:
                p.copy_(noise / math.sqrt(p.shape[1]))
