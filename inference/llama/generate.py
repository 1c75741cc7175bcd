"""Generation: prefill, then one token per step from the static KV cache; and scoring, the prefill
alone, which gives every prompt token's log-probability (what evaluation harnesses need).

Prompts of different lengths share a batch without padding tricks: each row keeps its own positions,
and slots a row has not reached yet are masked, so a row's numbers are those of running it alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from inference.llama.model import Transformer
from inference.llama.tokenizer import IncrementalDecoder, Tokenizer

SYNC_EVERY = 8  # batched generate looks at finished rows on the host only this often
# Scoring puts this many positions at a time through the output layer: their logits, positions x
# vocabulary floats (64 MB at 512 x 32,000), are what scoring holds in memory beyond the prefill.
SCORE_CHUNK_POSITIONS = 512


@dataclass
class SamplingParams:
    """temperature 0 is greedy; top_k 0 and top_p 1 disable those filters; seed makes sampling repeatable."""

    max_new_tokens: int = 16  # 0: the prefill only (scoring)
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0  # also the k most likely ids at each step, with their logprobs (OpenAI: up to 5)

    def __post_init__(self):
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be 0 (score only) or more.")
        if self.temperature < 0:
            raise ValueError("temperature must be 0 (greedy) or more.")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1].")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or more.")
        if self.top_logprobs < 0:
            raise ValueError("top_logprobs must be 0 (off) or more.")
        self.stop = tuple(s for s in self.stop if s)


@dataclass
class Completion:
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)  # generated ids, without the eos that ended them
    text: str = ""
    finish_reason: str | None = None  # "stop" (eos or a stop sequence) or "length"
    logprobs: list[float] | None = None  # log p(token) under the model's unscaled distribution


class DecodeStep(NamedTuple):
    """One step of a batch, as device tensors: the next ids (B,), their logprobs (B,) when asked
    for, and the top_logprobs most likely ids (B, k) with their logprobs (B, k) when asked for."""

    ids: torch.Tensor
    logprobs: torch.Tensor | None = None
    top_logprobs: torch.Tensor | None = None
    top_ids: torch.Tensor | None = None


@dataclass
class PromptScores:
    """One prompt scored. For each token after the first, in order: its log-probability given the
    tokens before it (log_softmax of the unscaled logits), and the top_k most likely ids at that
    position with theirs (empty lists when top_k is 0). The first token has none: nothing precedes it."""

    logprobs: list[float]
    top_ids: list[list[int]] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)


@dataclass
class PromptScoring:
    """Scoring asked of decode_steps' prefill: which rows (None: all) and how many alternatives per
    position; the prefill fills ``results`` (row -> PromptScores) before the first step."""

    rows: frozenset[int] | None = None
    top_k: int = 0
    results: dict[int, PromptScores] = field(default_factory=dict)


@dataclass
class StreamChunk:
    text: str
    token: int | None
    logprob: float | None = None
    finish_reason: str | None = None


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Next ids (B,) from logits (B, V), entirely on the device: no .item(), no host round trip."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if params.top_k:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the more likely ones before it already reach top_p; the first always stays.
        drop = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    # argmax(p / E) with E ~ Exp(1) draws from p (the exponential race) without multinomial's sync.
    noise = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / noise).argmax(dim=-1)


def _generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    if params.temperature == 0:
        return None
    gen = torch.Generator(device=device)
    if params.seed is None:
        gen.seed()
    else:
        gen.manual_seed(params.seed)
    return gen


def _prefill(model: Transformer, prompts: list[list[int]], extra_positions: int, scoring: PromptScoring | None):
    """Run every prompt through the model at once, leaving the cache ready for extra_positions more
    tokens per row; the logits (B, V) after each prompt's last token. Fills scoring's results."""
    if not prompts or any(not p for p in prompts):
        raise ValueError("every prompt needs at least one token (encode with bos).")
    if any(t < 0 for p in prompts for t in p):
        raise ValueError("prompts hold a negative id (pad -1 is never fed to the model).")
    device = model.output.weight.device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = max(len(p) for p in prompts)
    model.setup_caches(len(prompts), width + extra_positions)
    # Right-pad with id 0 (unk; any valid id would do): the padding's cache slots are overwritten
    # before any row can attend to them, and no score is read at a padded position.
    tokens = torch.tensor([p + [0] * (width - len(p)) for p in prompts], device=device)
    positions = torch.arange(width, device=device).expand(len(prompts), width)
    with torch.no_grad():
        hidden = model.hidden(tokens, positions)
        last = model.logits(hidden[torch.arange(len(prompts), device=device), lengths - 1])
        if scoring is not None:
            scoring.results = _prompt_scores(model, hidden, tokens, [len(p) for p in prompts], scoring)
    return last


def _prompt_scores(
    model: Transformer, hidden: torch.Tensor, tokens: torch.Tensor, lengths: list[int], scoring: PromptScoring
) -> dict[int, PromptScores]:
    """Each scored row's log p(token i | tokens before i) for i >= 1, from the prefill's states: the
    positions of all rows go through the output layer together, SCORE_CHUNK_POSITIONS at a time."""
    rows = range(len(lengths)) if scoring.rows is None else sorted(scoring.rows)
    row_index = [row for row in rows for _ in range(lengths[row] - 1)]
    position = [i for row in rows for i in range(lengths[row] - 1)]
    device = hidden.device
    chosen, top_values, top_ids = [], [], []
    for start in range(0, len(position), SCORE_CHUNK_POSITIONS):
        r = torch.tensor(row_index[start : start + SCORE_CHUNK_POSITIONS], device=device)
        p = torch.tensor(position[start : start + SCORE_CHUNK_POSITIONS], device=device)
        logprobs = torch.log_softmax(model.logits(hidden[r, p]), dim=-1)
        chosen.append(logprobs.gather(-1, tokens[r, p + 1].unsqueeze(-1)).squeeze(-1))
        if scoring.top_k:
            top = logprobs.topk(min(scoring.top_k, logprobs.shape[-1]), dim=-1)
            top_values.append(top.values)
            top_ids.append(top.indices)
    # One copy to the host for the whole batch.
    flat = torch.cat(chosen).tolist() if chosen else []
    flat_top = torch.cat(top_values).tolist() if top_values else []
    flat_ids = torch.cat(top_ids).tolist() if top_ids else []
    results, at = {}, 0
    for row in rows:
        n = lengths[row] - 1
        results[row] = PromptScores(flat[at : at + n], flat_ids[at : at + n], flat_top[at : at + n])
        at += n
    return results


def score(model: Transformer, prompts: list[list[int]], *, top_k: int = 0) -> list[PromptScores]:
    """Score a batch of prompts (ids, any mix of lengths) without generating: one PromptScores per
    prompt, in order; the numbers of transformers' LlamaForCausalLM on the same weights."""
    scoring = PromptScoring(top_k=top_k)
    _prefill(model, [list(p) for p in prompts], 0, scoring)
    return [scoring.results[row] for row in range(len(prompts))]


def decode_steps(
    model: Transformer, prompts: list[list[int]], params: SamplingParams, scoring: PromptScoring | None = None
) -> Iterator[DecodeStep]:
    """Yield a DecodeStep per step, max_new_tokens times. With scoring, the prefill also scores the
    prompts it asks for (its results are filled before the first step)."""
    logits = _prefill(model, prompts, params.max_new_tokens, scoring)
    device = logits.device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    generator = _generator(params, device)
    pos = (lengths - 1).unsqueeze(1)
    for step in range(params.max_new_tokens):
        next_ids = sample(logits, params, generator)
        out = DecodeStep(next_ids)
        if params.logprobs or params.top_logprobs:
            all_logprobs = torch.log_softmax(logits, dim=-1)
            chosen = all_logprobs.gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)
            out = DecodeStep(next_ids, chosen)
            if params.top_logprobs:
                top = all_logprobs.topk(min(params.top_logprobs, all_logprobs.shape[-1]), dim=-1)
                out = DecodeStep(next_ids, chosen, top.values, top.indices)
        yield out
        if step + 1 < params.max_new_tokens:
            pos = pos + 1  # a new tensor: a compiled step must not see its input change under it
            with torch.no_grad():
                logits = model.decode(next_ids.unsqueeze(1), pos)[:, 0]


class Sequence:
    """Host-side bookkeeping of one row: eos, stop sequences, max tokens, and text deltas.

    Rows of one batch may have their own max_new_tokens and stop sequences (the sandbox batches
    requests that differ in those): only sampling settings must be shared."""

    def __init__(self, tokenizer: Tokenizer, prompt: list[int], params: SamplingParams, *, in_context: bool = False):
        """in_context: the text continues the prompt's (a first word keeps its leading space),
        for text that follows the prompt's own, as an echo does."""
        self.tokenizer = tokenizer
        self.params = params
        self.completion = Completion(prompt_tokens=prompt, logprobs=[] if params.logprobs else None)
        self.decoder = IncrementalDecoder(tokenizer, prompt[-1:] if in_context else [])
        self.pending = ""  # decoded text held back because it could be the start of a stop sequence
        if params.max_new_tokens == 0:
            self.completion.finish_reason = "length"  # scoring only: nothing to generate

    def push(self, token: int, logprob: float | None) -> str:
        """Consume one generated id; return the text that may be shown now."""
        c = self.completion
        if token == self.tokenizer.eos_id:
            self.pending += self.decoder.flush()
            return self._finish("stop")
        c.tokens.append(token)
        if c.logprobs is not None:
            c.logprobs.append(logprob)
        self.pending += self.decoder.push(token)
        at_end = len(c.tokens) >= self.params.max_new_tokens
        if at_end:
            self.pending += self.decoder.flush()
        for stop in self.params.stop:
            index = self.pending.find(stop)
            if index >= 0:
                self.pending = self.pending[:index]
                return self._finish("stop")
        if at_end:
            return self._finish("length")
        # Keep back the longest tail that could still grow into a stop sequence.
        keep = max((k for s in self.params.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        c.text += out
        return out

    def _finish(self, reason: str) -> str:
        out, self.pending = self.pending, ""
        self.completion.text += out
        self.completion.finish_reason = reason
        return out


def generate(
    model: Transformer, tokenizer: Tokenizer, prompts: list[str] | list[list[int]], params: SamplingParams
) -> list[Completion]:
    """Complete a batch of prompts (text, or ids starting with bos); one Completion per prompt, in order.

    Greedy results equal those of generating each prompt alone.
    """
    ids = [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]
    seqs = [Sequence(tokenizer, p, params) for p in ids]
    window: list[DecodeStep] = []

    def drain() -> bool:
        if not window:
            return all(s.completion.finish_reason for s in seqs)
        steps = torch.stack([step.ids for step in window], dim=1).tolist()  # one host sync per window
        lps = torch.stack([step.logprobs for step in window], dim=1).tolist() if params.logprobs else None
        window.clear()
        for row, seq in enumerate(seqs):
            for j, token in enumerate(steps[row]):
                if seq.completion.finish_reason:
                    break
                seq.push(token, lps[row][j] if lps else None)
        return all(s.completion.finish_reason for s in seqs)

    for step in decode_steps(model, ids, params):
        window.append(step)
        if len(window) == SYNC_EVERY and drain():
            break
    drain()
    return [s.completion for s in seqs]


def generate_stream(
    model: Transformer, tokenizer: Tokenizer, prompt: str | list[int], params: SamplingParams
) -> Iterator[StreamChunk]:
    """Text deltas of one completion as they are decided; the last chunk carries the finish reason.

    Deltas never split a UTF-8 character or the start of a stop sequence, and concatenate to the
    Completion.text that generate() would return.
    """
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    seq = Sequence(tokenizer, ids, params)
    for next_ids, logprobs, _, _ in decode_steps(model, [ids], params):
        token = int(next_ids[0])
        logprob = float(logprobs[0]) if logprobs is not None else None
        text = seq.push(token, logprob)
        reason = seq.completion.finish_reason
        yield StreamChunk(
            text=text, token=None if token == tokenizer.eos_id else token, logprob=logprob, finish_reason=reason
        )
        if reason:
            return
