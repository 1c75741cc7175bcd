import pytest
import torch

from inference.llama.checkpoint import load_llama
from inference.llama.generate import SamplingParams, generate, generate_stream, sample
from inference.llama.tokenizer import IncrementalDecoder, Tokenizer


@pytest.fixture(scope="module")
def engine(tiny_ckpt):
    return load_llama(tiny_ckpt, device="cpu"), Tokenizer(tiny_ckpt / "tokenizer.model")


@pytest.mark.parametrize("text", ["héllo 🙂", " leading space, then 🙂🙂 and 日本語", "The river ran slow."])
def test_streaming_detokenization_never_emits_broken_characters(engine, text):
    _, tok = engine
    ids = tok.encode(text)
    decoder = IncrementalDecoder(tok)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == tok.decode(ids) == text
    assert "🙂" not in text or "🙂" in deltas


def test_tokenizer_uses_llama_ids(engine):
    _, tok = engine
    assert (tok.sp.unk_id(), tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, -1)
    ids = tok.encode("Hello", bos=True, eos=True)
    assert (ids[0], ids[-1]) == (1, 2)


def test_stream_concatenates_to_the_completion_and_ends_with_a_finish_reason(engine):
    model, tok = engine
    params = SamplingParams(max_new_tokens=20, temperature=0.8, top_k=40, seed=3, logprobs=True)
    chunks = list(generate_stream(model, tok, "Once upon a time", params))
    whole = generate(model, tok, ["Once upon a time"], params)[0]
    assert "".join(c.text for c in chunks) == whole.text
    assert [c.token for c in chunks if c.token is not None] == whole.tokens
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].finish_reason in ("stop", "length")
    assert len(whole.logprobs) == len(whole.tokens) and all(lp <= 0 for lp in whole.logprobs)


def test_greedy_is_deterministic_and_stops_at_length(engine):
    model, tok = engine
    params = SamplingParams(max_new_tokens=12)
    a, b = (generate(model, tok, ["Hello"], params)[0] for _ in range(2))
    assert a == b
    assert a.finish_reason == "length" or a.tokens and len(a.tokens) < 12


def test_seed_makes_sampling_repeatable_and_different_seeds_differ(engine):
    model, tok = engine
    runs = {seed: generate(model, tok, ["Hello"], SamplingParams(max_new_tokens=16, temperature=1.0, seed=seed))[0]
            for seed in (1, 1, 2)}
    again = generate(model, tok, ["Hello"], SamplingParams(max_new_tokens=16, temperature=1.0, seed=1))[0]
    assert runs[1].tokens == again.tokens
    assert runs[1].tokens != runs[2].tokens


def test_top_k_one_and_tiny_top_p_are_greedy(engine):
    model, tok = engine
    greedy = generate(model, tok, ["Hello"], SamplingParams(max_new_tokens=10))[0].tokens
    for params in (SamplingParams(max_new_tokens=10, temperature=1.5, top_k=1, seed=0),
                   SamplingParams(max_new_tokens=10, temperature=1.5, top_p=1e-6, seed=0)):
        assert generate(model, tok, ["Hello"], params)[0].tokens == greedy


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]])).expand(20000, 4)
    gen = torch.Generator().manual_seed(0)
    draws = sample(logits, SamplingParams(temperature=1.0), gen)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1, 0.0]), atol=0.02)
    top_p = sample(logits, SamplingParams(temperature=1.0, top_p=0.75), gen)
    assert set(top_p.tolist()) == {0, 1}


def test_stop_sequence_truncates_text_and_finishes_with_stop(engine):
    model, tok = engine
    full = generate(model, tok, ["Hello"], SamplingParams(max_new_tokens=16))[0]
    stop = full.text[len(full.text) // 2:][:2]
    assert stop
    cut = generate(model, tok, ["Hello"], SamplingParams(max_new_tokens=16, stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]
    streamed = "".join(c.text for c in generate_stream(model, tok, "Hello", SamplingParams(16, stop=(stop,))))
    assert streamed == cut.text


def test_batched_greedy_equals_one_by_one_greedy(engine):
    model, tok = engine
    prompts = ["Hi", "The lighthouse stood at the end of a long stone pier", "Bees do not sleep", "A"]
    params = SamplingParams(max_new_tokens=20)
    batched = generate(model, tok, prompts, params)
    alone = [generate(model, tok, [p], params)[0] for p in prompts]
    assert [c.tokens for c in batched] == [c.tokens for c in alone]
    assert [c.text for c in batched] == [c.text for c in alone]


def test_negative_or_empty_prompt_ids_are_refused(engine):
    model, tok = engine
    with pytest.raises(ValueError, match="pad -1"):
        generate(model, tok, [[1, -1, 5]], SamplingParams())
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, tok, [[]], SamplingParams())


def test_compiled_decode_gives_the_tokens_and_logprobs_of_eager_mode(tiny_ckpt):
    # The compiled step rewrites one-row products as multiply-and-sum; the numbers must not move.
    tok = Tokenizer(tiny_ckpt / "tokenizer.model")
    params = SamplingParams(max_new_tokens=20, logprobs=True)
    eager = generate(load_llama(tiny_ckpt, device="cpu"), tok, ["Hello", "The mill"], params)
    compiled_model = load_llama(tiny_ckpt, device="cpu")
    compiled_model.compile_decode()
    single = generate(compiled_model, tok, ["Hello"], params)[0]
    batched = generate(compiled_model, tok, ["Hello", "The mill"], params)
    assert single.tokens == eager[0].tokens and len(single.tokens) > 8
    assert [c.tokens for c in batched] == [c.tokens for c in eager]
    assert max(abs(a - b) for a, b in zip(single.logprobs, eager[0].logprobs)) < 1e-4
