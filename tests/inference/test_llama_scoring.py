"""Scoring: every prompt token's log-probability from one prefill, against transformers'
LlamaForCausalLM on the same weights (float32), batched with any mix of lengths."""

import pytest
import torch

from inference.llama.checkpoint import load_llama
from inference.llama.generate import SCORE_CHUNK_POSITIONS, PromptScoring, SamplingParams, decode_steps, generate, score
from inference.llama.hf_reference import to_hf
from inference.llama.tokenizer import Tokenizer

TOL = 1e-4
PROMPTS = [
    "The river ran slow and brown past the mill",
    "Hi",
    "Once upon a time there was a small village at the edge of a very old forest, and in it lived",
]


@pytest.fixture(scope="module")
def engine(tiny_ckpt):
    model = load_llama(tiny_ckpt, dtype=torch.float32, device="cpu", max_seq_len=1024)
    return model, Tokenizer(tiny_ckpt / "tokenizer.model"), to_hf(model)


def reference_scores(reference, ids: list[int], k: int):
    """transformers' log-softmax at each position, read at the next prompt token, and its top k."""
    with torch.no_grad():
        logprobs = torch.log_softmax(reference(torch.tensor([ids])).logits[0].float(), dim=-1)[:-1]
    chosen = logprobs.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
    top = logprobs.topk(k, dim=-1)
    return chosen, top.values, top.indices


def test_batched_scores_equal_transformers_for_every_prompt_token(engine):
    model, tok, reference = engine
    prompts = [tok.encode(text) for text in PROMPTS]

    results = score(model, prompts, top_k=5)

    assert len(results) == len(prompts)
    for ids, result in zip(prompts, results, strict=True):
        chosen, top_values, top_ids = reference_scores(reference, ids, 5)
        assert len(result.logprobs) == len(ids) - 1  # the first token has no score
        assert (torch.tensor(result.logprobs) - chosen).abs().max().item() < TOL
        assert (torch.tensor(result.top_logprobs) - top_values).abs().max().item() < TOL
        assert result.top_ids == top_ids.tolist()
        # The chosen token is never more likely than the best alternative.
        assert all(lp <= top[0] + 1e-6 for lp, top in zip(result.logprobs, result.top_logprobs, strict=True))


def test_a_row_scores_the_same_alone_and_in_a_batch_of_other_lengths(engine):
    model, tok, _ = engine
    prompts = [tok.encode(text) for text in PROMPTS]
    batched = score(model, prompts)[1]
    alone = score(model, [prompts[1]])[0]
    assert batched.top_ids == [] and alone.top_ids == []
    assert torch.allclose(torch.tensor(batched.logprobs), torch.tensor(alone.logprobs), atol=1e-5)


def test_prompts_longer_than_one_output_chunk_are_scored_to_the_end(engine):
    model, tok, reference = engine
    ids = (tok.encode(" ".join(PROMPTS)) * 20)[: SCORE_CHUNK_POSITIONS + 40]
    assert len(ids) > SCORE_CHUNK_POSITIONS + 1
    result = score(model, [ids, ids[:7]], top_k=1)[0]
    chosen, _, _ = reference_scores(reference, ids, 1)
    assert len(result.logprobs) == len(ids) - 1
    assert (torch.tensor(result.logprobs) - chosen).abs().max().item() < TOL


def test_token_id_prompts_are_scored_as_sent_without_a_bos(engine):
    model, tok, reference = engine
    ids = tok.encode(PROMPTS[0], bos=False)
    assert ids[0] != tok.bos_id
    chosen, _, _ = reference_scores(reference, ids, 1)
    assert (torch.tensor(score(model, [ids])[0].logprobs) - chosen).abs().max().item() < TOL


def test_a_one_token_prompt_has_nothing_to_score(engine):
    model, tok, _ = engine
    assert score(model, [[tok.bos_id]], top_k=3)[0].logprobs == []


def test_scoring_during_generation_leaves_the_generated_tokens_unchanged(engine):
    model, tok, reference = engine
    prompts = [tok.encode(text) for text in PROMPTS]
    params = SamplingParams(max_new_tokens=6)
    plain = [c.tokens for c in generate(model, tok, prompts, params)]

    scoring = PromptScoring(rows=frozenset({0, 2}), top_k=2)
    steps = torch.stack([step.ids for step in decode_steps(model, prompts, params, scoring)], dim=1).tolist()

    assert sorted(scoring.results) == [0, 2]
    for row in (0, 2):
        chosen, _, _ = reference_scores(reference, prompts[row], 2)
        assert (torch.tensor(scoring.results[row].logprobs) - chosen).abs().max().item() < TOL
    for row, tokens in enumerate(plain):
        assert steps[row][: len(tokens)] == tokens


def test_zero_new_tokens_scores_only(engine):
    model, tok, _ = engine
    completion = generate(model, tok, [PROMPTS[0]], SamplingParams(max_new_tokens=0))[0]
    assert completion.tokens == [] and completion.text == "" and completion.finish_reason == "length"
    with pytest.raises(ValueError, match="0 \\(score only\\) or more"):
        SamplingParams(max_new_tokens=-1)
