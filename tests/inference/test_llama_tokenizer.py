"""The tokenizer the sandbox serves (/tokenize, /detokenize, echoed prompts) against transformers'
LlamaTokenizer built from the same tokenizer.model: special tokens named in text, their text on
the way back, and where each token starts in the text."""

import pytest

from inference.llama.hf_reference import hf_tokenizer_save
from inference.llama.tokenizer import Tokenizer

TEXTS = [
    "Hello world",
    "The capital of France is Paris.",
    "Hello</s>world",
    "Question: 2+2?\nAnswer: 4</s>",
    "<s>",
    "</s>",
    "<unk>",
    "x\n\ny  z",
    "ünï 日本 🙂",
    "12345",
    "",
]


@pytest.fixture(scope="module")
def tokenizers(tiny_ckpt, tmp_path_factory):
    from transformers import AutoTokenizer

    folder = hf_tokenizer_save(tiny_ckpt / "tokenizer.model", tmp_path_factory.mktemp("hf-tokenizer"))
    return Tokenizer(tiny_ckpt / "tokenizer.model"), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("text", TEXTS)
def test_encoding_with_special_tokens_equals_transformers(tokenizers, text):
    ours, hf = tokenizers
    assert ours.encode(text, bos=False, special=True) == hf(text, add_special_tokens=False).input_ids
    assert ours.encode(text, special=True) == hf(text).input_ids  # with bos, as add_special_tokens does


def test_special_token_names_are_their_ids_as_lm_eval_reads_them(tokenizers):
    ours, _ = tokenizers
    # lm-evaluation-harness's RemoteTokenizer takes eos_token_id = tokenize("</s>")[0].
    assert ours.encode("</s>", bos=False, special=True) == [ours.eos_id]
    assert ours.encode("<s>", bos=False, special=True) == [ours.bos_id]
    # Meta's reading (the default) is plain text: several pieces, none of them eos.
    assert ours.eos_id not in ours.encode("</s>", bos=False)


@pytest.mark.parametrize(
    "text", ["Hello world", "Hello</s>world", "<s>The capital", "ünï 日本 🙂 and </s> more", "a<unk>b"]
)
def test_decoding_with_special_tokens_equals_transformers(tokenizers, text):
    ours, hf = tokenizers
    ids = hf(text).input_ids
    assert ours.decode_special(ids) == hf.decode(ids)


@pytest.mark.parametrize("text", ["The capital of France is Paris.", "ünï 日本 🙂 x", " two  spaces", "x\n\ny"])
def test_text_offsets_point_where_each_token_starts(tokenizers, text):
    ours, _ = tokenizers
    ids = ours.encode(text)
    offsets = ours.text_offsets(ids)
    decoded = ours.decode(ids)
    assert offsets[0] == 0 and len(offsets) == len(ids)
    # Each offset is the length of the text the tokens before it decode to (whole characters).
    for i, offset in enumerate(offsets):
        prefix = ours.decode(ids[:i])
        if "\ufffd" not in prefix:
            assert offset == len(prefix), (i, prefix)
    assert offsets == sorted(offsets) and offsets[-1] <= len(decoded)


def test_a_continuation_decoded_in_context_keeps_its_first_space(tokenizers):
    from inference.llama.tokenizer import IncrementalDecoder

    ours, _ = tokenizers
    prompt = ours.encode("Once upon a")
    continuation = ours.encode("Once upon a time there was")[len(prompt) :]
    assert ours.encode("Once upon a time there was")[: len(prompt)] == prompt
    alone, in_context = IncrementalDecoder(ours), IncrementalDecoder(ours, prompt[-1:])
    text_alone = "".join(alone.push(t) for t in continuation) + alone.flush()
    text_in_context = "".join(in_context.push(t) for t in continuation) + in_context.flush()
    assert text_in_context == " time there was"
    assert text_alone == "time there was"  # as transformers decodes a continuation on its own
    # A context that is a special token (a prompt of <s> alone) starts the text: no space.
    bos_only = IncrementalDecoder(ours, [ours.bos_id])
    assert "".join(bos_only.push(t) for t in continuation) + bos_only.flush() == "time there was"
