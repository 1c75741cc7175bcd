"""Evaluation through /v1/completions with the official openai client, a live server and a real
worker: echo returns the prompt with its tokens' log-probabilities (the engine's score(), the first
token null), max_tokens 0 scores without generating, token-id prompts are used as sent, a list of
prompts is one choice each, and the daily budget counts the scored tokens."""

from __future__ import annotations

import math

import openai
import pytest
import torch

from inference.llama.checkpoint import load_llama
from inference.llama.generate import SamplingParams, generate, score
from inference.llama.tokenizer import Tokenizer
from inference.sandbox.models import JobStatus, SandboxJob, SandboxQuota

pytestmark = pytest.mark.real_worker

MODEL = "llama-demo-tiny"
PROMPT = "The capital of France is Paris, and the capital of Spain is Madrid."
TOL = 1e-4


@pytest.fixture(scope="module")
def engine(demo_checkpoint):
    model = load_llama(demo_checkpoint, dtype=torch.float32, device="cpu")
    return model, Tokenizer(demo_checkpoint / "tokenizer.model")


def test_echo_with_max_tokens_0_scores_every_prompt_token_as_the_engine_does(openai_client, demo_grant, engine):
    model, tokenizer = engine
    ids = tokenizer.encode(PROMPT)
    expected = score(model, [ids], top_k=3)[0]

    completion = openai_client().completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=3, temperature=0
    )

    choice = completion.choices[0]
    assert choice.text == PROMPT and choice.finish_reason == "length"
    lp = choice.logprobs
    assert lp.tokens == [tokenizer.piece(token) for token in ids] and lp.tokens[0] == "<s>"
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert max(abs(a - b) for a, b in zip(lp.token_logprobs[1:], expected.logprobs, strict=True)) < TOL
    for position, top in enumerate(lp.top_logprobs[1:]):
        token = lp.tokens[position + 1]
        # The prompt's own token, then the three most likely, which it may be one of.
        assert top[token] == pytest.approx(lp.token_logprobs[position + 1], abs=1e-6)
        assert len(top) in (3, 4)
        best = tokenizer.piece(expected.top_ids[position][0])
        assert top[best] == pytest.approx(expected.top_logprobs[position][0], abs=TOL)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset) and lp.text_offset[-1] < len(PROMPT)
    assert completion.usage.prompt_tokens == len(ids) and completion.usage.completion_tokens == 0
    job = SandboxJob.objects.get()
    assert job.status == JobStatus.SUCCEEDED and job.prompt_tokens == len(ids) and job.params["echo"] is True


def test_token_id_prompts_in_a_batch_are_scored_as_sent_and_generate_one_token(openai_client, demo_grant, engine):
    """What lm-evaluation-harness sends: token ids without a bos, several lengths, max_tokens 1, logprobs 1."""
    model, tokenizer = engine
    prompts = [tokenizer.encode(text, bos=False) for text in (PROMPT, "Hello there", "Once upon a time, far away")]
    expected = score(model, prompts, top_k=1)
    greedy = [c.tokens[:1] for c in generate(model, tokenizer, prompts, SamplingParams(max_new_tokens=1))]

    completion = openai_client().completions.create(
        model=MODEL, prompt=prompts, max_tokens=1, echo=True, logprobs=1, temperature=0
    )

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    for ids, choice, scores, next_token in zip(prompts, completion.choices, expected, greedy, strict=True):
        lp = choice.logprobs
        assert len(lp.tokens) == len(ids) + 1  # the prompt, then the one generated token
        assert lp.tokens[0] == tokenizer.piece(ids[0]) != "<s>"  # no bos was added
        assert lp.token_logprobs[0] is None
        assert max(abs(a - b) for a, b in zip(lp.token_logprobs[1 : len(ids)], scores.logprobs, strict=True)) < TOL
        generated = next_token[0] if next_token else tokenizer.eos_id
        assert lp.tokens[-1] == tokenizer.piece(generated)
        # Greedy: the generated token is the most likely one (lm-eval's is_greedy reads this).
        assert lp.token_logprobs[-1] == pytest.approx(max(lp.top_logprobs[-1].values()), abs=1e-6)
        assert choice.text.startswith(tokenizer.decode(ids))
    assert completion.usage.prompt_tokens == sum(len(ids) for ids in prompts)


def test_echo_without_logprobs_returns_prompt_then_the_same_completion(openai_client, demo_grant):
    client = openai_client()
    plain = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0)
    echoed = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0, echo=True)
    text = echoed.choices[0].text
    assert text.startswith("Once upon a time") and echoed.choices[0].logprobs is None
    # The same tokens; echoed, the completion reads on from the prompt, so a first token that
    # starts a word keeps its space (" there"), which a completion decoded alone drops.
    completion = text.removeprefix("Once upon a time")
    assert completion in (plain.choices[0].text, " " + plain.choices[0].text)


def test_an_echoed_stream_starts_with_the_prompt_and_joins_to_the_whole_text(openai_client, demo_grant):
    client = openai_client()
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, echo=True, logprobs=0)
    chunks = list(client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, echo=True, logprobs=0, stream=True
    ))  # fmt: skip
    texts = [choice.text for chunk in chunks for choice in chunk.choices]
    assert texts[0].startswith(PROMPT) and "".join(texts) == whole.choices[0].text
    streamed = [t for chunk in chunks for c in chunk.choices if c.logprobs for t in c.logprobs.token_logprobs]
    assert streamed[0] is None and len(streamed) == len(whole.choices[0].logprobs.tokens)


def test_max_tokens_0_without_echo_is_refused_by_name(openai_client, demo_grant):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=0)
    assert refused.value.body["param"] == "max_tokens" and "echo" in refused.value.body["message"]
    assert not SandboxJob.objects.exists()


def test_scored_prompt_tokens_count_against_the_daily_budget(openai_client, demo_grant, researcher, engine):
    _, tokenizer = engine
    prompt_tokens = len(tokenizer.encode(PROMPT))
    SandboxQuota.objects.create(user=researcher, tokens_per_day=prompt_tokens + 5)
    client = openai_client()

    client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    # Generating nothing, the same scoring no longer fits: only 5 tokens of the budget are left.
    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)

    assert refused.value.body["code"] == "insufficient_quota"
    assert f"{prompt_tokens:,} of prompts" in refused.value.body["message"]
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == "5"
    assert SandboxJob.objects.count() == 1


def test_a_logprob_of_a_token_the_model_never_picks_is_finite_json(openai_client, demo_grant):
    completion = openai_client().completions.create(
        model=MODEL, prompt=[[1, 300, 301, 302, 303]], max_tokens=0, echo=True, logprobs=5
    )
    values = completion.choices[0].logprobs.token_logprobs[1:]
    assert all(math.isfinite(value) and value <= 0 for value in values)
