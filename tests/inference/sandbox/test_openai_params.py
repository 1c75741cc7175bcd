"""Reading /v1/completions and /v1/chat/completions bodies: what OpenAI's API accepts is read as
OpenAI reads it, and every bad field is refused by name, within the sandbox's limits."""

from __future__ import annotations

import pytest

from inference.sandbox.openai_params import (
    CHAT_PREAMBLE,
    CHAT_STOP,
    DEFAULT_MAX_TOKENS,
    ParamError,
    chat_request_parse,
    completion_request_parse,
)


def _completion(**body):
    return completion_request_parse({"model": "llama-7b", "prompt": "Hello", **body})


def _refused(parse, body, param: str | None, **kwargs) -> ParamError:
    with pytest.raises(ParamError) as raised:
        parse(body, **kwargs)
    assert raised.value.param == param, raised.value.message
    return raised.value


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("Hello", ("Hello",)),
        (["Hello", "Bonjour"], ("Hello", "Bonjour")),
        ([1, 15043, 29892], ((1, 15043, 29892),)),
        ([[1, 2], [1, 3, 4]], ((1, 2), (1, 3, 4))),
    ],
)
def test_every_prompt_form_openai_accepts_is_read(prompt, prompts):
    assert _completion(prompt=prompt).prompts == prompts


@pytest.mark.parametrize(
    ("prompt", "param"),
    [
        ([], "prompt"),
        (["Hello", [1, 2]], "prompt"),
        ([1, "two"], "prompt"),
        ([True, False], "prompt"),
        ({"text": "Hello"}, "prompt"),
        (None, "prompt"),
        (42, "prompt"),
        ([[1, -2]], "prompt[0]"),
        ([[1, 2], []], "prompt[1]"),
    ],
)
def test_a_malformed_prompt_is_refused_by_name(prompt, param):
    _refused(completion_request_parse, {"model": "llama-7b", "prompt": prompt}, param)


def test_the_defaults_are_openais():
    request = _completion()

    assert (request.max_tokens, request.temperature, request.top_p, request.n) == (DEFAULT_MAX_TOKENS, 1.0, 1.0, 1)
    assert (request.stop, request.seed, request.logprobs, request.stream, request.include_usage) == (
        (), None, None, False, False
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", 1025),
        ("max_tokens", 8.5),
        ("max_tokens", True),
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("temperature", "hot"),
        ("top_p", 0),
        ("top_p", 1.5),
        ("n", 0),
        ("n", 9),
        ("logprobs", 6),
        ("logprobs", -1),
        ("seed", "42"),
        ("stream", "yes"),
        ("user", 7),
        ("stop", 5),
        ("stop", ["a", 5]),
    ],
)
def test_each_field_out_of_range_is_refused_by_name(field, value):
    _refused(completion_request_parse, {"model": "llama-7b", "prompt": "Hi", field: value}, field)


def test_the_limits_are_settings(settings):
    settings.SANDBOX_MAX_TOKENS = 64
    settings.SANDBOX_MAX_STOP_SEQUENCES = 2
    settings.SANDBOX_MAX_PROMPT_CHARS = 10

    error = _refused(completion_request_parse, {"model": "m", "prompt": "Hi", "max_tokens": 65}, "max_tokens")
    assert "1 to 64" in error.message
    _refused(completion_request_parse, {"model": "m", "prompt": "Hi", "stop": ["a", "b", "c"]}, "stop")
    _refused(completion_request_parse, {"model": "m", "prompt": "x" * 11}, "prompt")
    assert _completion(max_tokens=64, stop=["a", "b"]).stop == ("a", "b")


def test_more_than_four_stop_sequences_are_fine_and_empty_ones_are_dropped():
    assert _completion(stop=["\n", "###", "User:", "Q:", "A:", ""]).stop == ("\n", "###", "User:", "Q:", "A:")
    assert _completion(stop="\n\n").stop == ("\n\n",)


def test_prompts_times_choices_is_bounded(settings):
    settings.SANDBOX_MAX_PROMPTS = 4

    _refused(completion_request_parse, {"model": "m", "prompt": ["a", "b", "c"], "n": 2}, "n")
    _refused(completion_request_parse, {"model": "m", "prompt": ["a"] * 5}, "prompt")
    assert len(_completion(prompt=["a", "b"], n=2).prompts) == 2


def test_stream_options_need_stream():
    _refused(completion_request_parse, {"model": "m", "prompt": "Hi", "stream_options": {"include_usage": True}},
             "stream_options")  # fmt: skip
    request = _completion(stream=True, stream_options={"include_usage": True})
    assert request.stream and request.include_usage


def test_the_model_is_required_except_under_a_per_model_base_url():
    _refused(completion_request_parse, {"prompt": "Hi"}, "model")
    assert completion_request_parse({"prompt": "Hi"}, model="llama-7b").model == "llama-7b"
    error = _refused(completion_request_parse, {"model": "llama-13b", "prompt": "Hi"}, "model", model="llama-7b")
    assert error.code == "model_not_found"


def test_a_body_that_is_not_an_object_is_refused():
    _refused(completion_request_parse, ["prompt"], None)


def test_chat_becomes_one_prompt_in_the_documented_template_and_stops_at_the_next_user_turn():
    request = chat_request_parse(
        {
            "model": "llama-7b",
            "messages": [
                {"role": "user", "content": "What is RMSNorm?"},
                {"role": "assistant", "content": "A normalization."},
                {"role": "user", "content": [{"type": "text", "text": "And "}, {"type": "text", "text": "RoPE?"}]},
            ],
            "stop": "\n\n\n",
        }
    )

    assert request.prompts == (
        f"{CHAT_PREAMBLE}\n\n### User:\nWhat is RMSNorm?\n\n### Assistant:\nA normalization.\n\n"
        "### User:\nAnd RoPE?\n\n### Assistant:\n",
    )
    assert request.stop == ("\n\n\n", CHAT_STOP) and request.chat


def test_a_system_message_replaces_the_preamble():
    messages = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"}]

    request = chat_request_parse({"model": "m", "messages": messages})

    assert request.prompts[0].startswith("Answer in French.\n\n### User:\nHi")


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "system", "content": "Be brief."}], "messages"),
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content"),
        (["Hi"], "messages[0]"),
    ],
)
def test_a_malformed_conversation_is_refused_by_name(messages, param):
    _refused(chat_request_parse, {"model": "m", "messages": messages}, param)


def test_chat_reads_max_completion_tokens_and_top_logprobs():
    request = chat_request_parse(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 7,
         "logprobs": True, "top_logprobs": 3}
    )  # fmt: skip

    assert (request.max_tokens, request.logprobs) == (7, 3)
    _refused(chat_request_parse, {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2},
             "top_logprobs")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": ["ok", "a\x00b"]}, "prompt[1]"),
        ({"prompt": "ok", "stop": ["\x00"]}, "stop"),
        ({"prompt": "ok", "user": "u\x00"}, "user"),
    ],
)
def test_a_nul_character_is_refused_by_name(body, param):
    with pytest.raises(ParamError) as refused:
        completion_request_parse({"model": "m", **body})

    assert refused.value.param == param and "NUL" in refused.value.message


def test_a_stop_sequence_longer_than_the_worker_checks_cheaply_is_refused():
    from inference.sandbox.openai_params import MAX_STOP_CHARS

    assert completion_request_parse({"model": "m", "prompt": "p", "stop": "s" * MAX_STOP_CHARS}).stop
    with pytest.raises(ParamError) as refused:
        completion_request_parse({"model": "m", "prompt": "p", "stop": ["ok", "s" * (MAX_STOP_CHARS + 1)]})

    assert refused.value.param == "stop" and str(MAX_STOP_CHARS) in refused.value.message
