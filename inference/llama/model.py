"""LLaMA-1 as Meta published it (facebookresearch/llama v1 model.py), with a gpt-fast style static KV cache.

Differences from Meta's file, all numerically neutral: no model-parallel layers (shards are merged
on load), per-row positions so prompts of different lengths share a batch, and attention over the
whole preallocated cache with a position mask instead of slicing it (no host sync, no reallocation).
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
    """Rotations e^(i * pos * theta^(-2k/head_dim)) as complex64, shape (end, head_dim // 2)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    t = torch.arange(end, dtype=torch.float32)
    return torch.polar(torch.ones(end, head_dim // 2), torch.outer(t, freqs))


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    # x: (B, T, H, D); freqs_cis: (B, T, D/2). Meta's convention: adjacent pairs (x0, x1) are one complex number.
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    out = torch.view_as_real(xc * freqs_cis.unsqueeze(2)).flatten(3)
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
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = self.wk(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        v = self.wv(x).view(bsz, seqlen, self.n_heads, self.head_dim)
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
        return self.wo(out.transpose(1, 2).reshape(bsz, seqlen, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


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

    def setup_caches(self, max_batch_size: int, max_seq_len: int) -> None:
        """Preallocate the KV cache; reuse the current one when it has exactly this shape."""
        if max_seq_len > self.args.max_seq_len:
            raise ValueError(
                f"{max_seq_len} positions requested but the model supports {self.args.max_seq_len}; "
                "shorten the prompt or ask for fewer new tokens."
            )
        if (max_batch_size, max_seq_len) == (self.max_batch_size, self.max_seq_len):
            return
        weight = self.output.weight
        shape = (max_batch_size, max_seq_len, self.args.n_heads, self.args.head_dim)
        for layer in self.layers:
            layer.attention.cache_k = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
            layer.attention.cache_v = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
        self.freqs_cis = precompute_freqs_cis(self.args.head_dim, max_seq_len).to(weight.device)
        self.cache_positions = torch.arange(max_seq_len, device=weight.device)
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len

    @torch.inference_mode()
    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor, logits_at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, V) in float32 for tokens (B, T) at positions input_pos (B, T).

        With logits_at (B,), only the hidden state at that index of each row goes through the output
        layer, giving (B, V): prefill needs just the last prompt token of each row.
        """
        if self.freqs_cis is None:
            self.setup_caches(tokens.shape[0], tokens.shape[1])
        h = self.tok_embeddings(tokens)
        freqs_cis = self.freqs_cis[input_pos]
        # (B, 1, T, S): a query at position p sees cache slots 0..p of its own row.
        mask = (self.cache_positions <= input_pos.unsqueeze(-1)).unsqueeze(1)
        for layer in self.layers:
            h = layer(h, freqs_cis, input_pos, mask)
        if logits_at is not None:
            h = h[torch.arange(h.shape[0], device=h.device), logits_at]
        return self.output(self.norm(h)).float()


def scaled_init_(model: Transformer, *, generator: torch.Generator) -> None:
    """Random weights with unit-scale activations, so an untrained model still has clear argmaxes."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            elif name == "tok_embeddings.weight":
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[1]))
