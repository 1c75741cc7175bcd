"""The official openai client against /v1/ completions and chat, served by a live server with a
real sandbox worker process behind the broker: greedy text equals the engine's own
(`llama_generate --json`), streams join to the same text, lists of prompts get a choice each, and
each refusal raises the client's own exception."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from inference.sandbox.models import JobStatus, SandboxJob
from tests.inference.sandbox.reference import llama_generate_json

pytestmark = pytest.mark.real_worker

PROMPT = "The capital of France is"


def test_greedy_completion_equals_the_engine_token_for_token(
    openai_client, demo_grant, demo_checkpoint, sandbox_worker
):
    reference = llama_generate_json(demo_checkpoint, PROMPT, 24)

    completion = openai_client().completions.create(
        model="llama-demo-tiny", prompt=PROMPT, max_tokens=24, temperature=0, logprobs=0
    )

    choice = completion.choices[0]
    assert choice.text == reference["text"], sandbox_worker.log()
    assert completion.usage.prompt_tokens == len(reference["prompt_tokens"])
    assert completion.usage.completion_tokens == len(reference["tokens"])
    assert choice.finish_reason in ("length", "stop")
    # Every generated token is listed, and the eos that ended the text if one did.
    ended_by_eos = len(reference["tokens"]) < 24
    assert len(choice.logprobs.tokens) == len(reference["tokens"]) + ended_by_eos
    job = SandboxJob.objects.get()
    assert job.status == JobStatus.SUCCEEDED and job.grant == demo_grant and job.outputs == [reference["text"]]
    assert completion.id == job.public_id


def test_a_stream_joins_to_the_same_text_and_ends_with_usage(openai_client, demo_grant, demo_checkpoint):
    reference = llama_generate_json(demo_checkpoint, PROMPT, 32)

    stream = openai_client().completions.create(
        model="llama-demo-tiny", prompt=PROMPT, max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)

    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert text == reference["text"]
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].text]) > 1  # more than one delta
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(reference["tokens"])


def test_a_list_of_prompts_gets_one_choice_each_in_order(openai_client, demo_grant, demo_checkpoint):
    prompts = ["Once upon a time", PROMPT, "The"]
    references = [llama_generate_json(demo_checkpoint, prompt, 12)["text"] for prompt in prompts]

    completion = openai_client().completions.create(
        model="llama-demo-tiny", prompt=prompts, max_tokens=12, temperature=0
    )

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert [choice.text for choice in completion.choices] == references


def test_chat_answers_through_the_documented_template(openai_client, demo_grant, demo_checkpoint):
    from inference.sandbox.openai_params import chat_prompt

    messages = [{"role": "user", "content": "Say hello."}]
    reference = llama_generate_json(demo_checkpoint, chat_prompt([("user", "Say hello.")]), 20)

    reply = openai_client().chat.completions.create(
        model="llama-demo-tiny", messages=messages, max_tokens=20, temperature=0
    )

    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == reference["text"].split("\n### User:")[0]

    chunks = list(
        openai_client().chat.completions.create(
            model="llama-demo-tiny", messages=messages, max_tokens=20, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_sampling_with_a_seed_repeats_and_n_gives_several_choices(openai_client, demo_grant):
    client = openai_client()
    first = client.completions.create(
        model="llama-demo-tiny", prompt=PROMPT, max_tokens=16, temperature=1.0, seed=7, n=3
    )
    again = client.completions.create(
        model="llama-demo-tiny", prompt=PROMPT, max_tokens=16, temperature=1.0, seed=7, n=3
    )

    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1  # three draws, not one copied


def test_the_per_model_base_url_completes_without_naming_the_model(live_server, researcher, api_key, demo_grant):
    request = urllib.request.Request(
        f"{live_server.url}/sandbox/llama-demo-tiny/v1/completions",
        data=json.dumps({"prompt": PROMPT, "max_tokens": 4, "temperature": 0}).encode(),
        headers={"Authorization": f"Bearer {api_key(researcher)}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
        headers = response.headers

    assert body["model"] == "llama-demo-tiny" and body["choices"][0]["text"]
    assert headers["x-ratelimit-limit-requests"] == "60" and headers["x-ratelimit-remaining-requests"] == "59"


def test_refusals_raise_the_clients_own_exceptions(openai_client, demo_grant, settings):
    client = openai_client()
    with pytest.raises(openai.AuthenticationError):
        openai_client(key="mwp_wrong").completions.create(model="llama-demo-tiny", prompt="x", max_tokens=1)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="llama-demo-tiny", prompt="x", max_tokens=1, temperature=3)
    assert bad.value.body["param"] == "temperature"

    settings.SANDBOX_TOKENS_PER_DAY = 10
    with pytest.raises(openai.RateLimitError) as limited:
        client.completions.create(model="llama-demo-tiny", prompt="x", max_tokens=11)
    assert limited.value.response.headers["x-should-retry"] == "false"
    assert SandboxJob.objects.count() == 0  # nothing admitted, nothing run


def test_a_prompt_longer_than_the_model_takes_is_a_bad_request(openai_client, demo_grant):
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client().completions.create(model="llama-demo-tiny", prompt="word " * 3000, max_tokens=8)

    assert bad.value.code == "context_length_exceeded" and bad.value.body["param"] == "prompt"
    assert "takes at most 1536" in bad.value.body["message"]
    assert not SandboxJob.objects.exists()  # refused at admission: nothing queued, nothing charged
