"""The remote tokenizer beside each model's base URL (/sandbox/<slug>/tokenizer_info, /tokenize,
/detokenize), in the shapes lm-evaluation-harness's RemoteTokenizer reads, behind the model's own
token and grant check."""

from __future__ import annotations

import json

import pytest

from inference.llama.tokenizer import Tokenizer
from inference.sandbox.openai_params import chat_prompt
from inference.sandbox.tokenizers import sandbox_tokenizers_forget
from portal.services import api_token_create

BASE = "/sandbox/llama-demo-tiny"


@pytest.fixture
def demo(published_demo_weights, researcher, reviewer, active_grant_make, settings, tmp_path):
    settings.SANDBOX_CACHE_DIR = tmp_path / "sandbox-cache"
    sandbox_tokenizers_forget()
    variant, checkpoint, _ = published_demo_weights
    active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    yield variant, Tokenizer(checkpoint / "tokenizer.model")
    sandbox_tokenizers_forget()


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token_create(user=user, name='tokenizer test')[1]}"}


def post(client, path: str, body, **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def test_tokenizer_info_names_the_special_tokens_lm_eval_reads(client, demo, researcher, settings):
    variant, _ = demo
    response = client.get(f"{BASE}/tokenizer_info", **bearer(researcher))
    assert response.status_code == 200
    info = response.json()
    specials = (info["bos_token"], info["eos_token"], info["unk_token"], info["pad_token"])
    assert specials == ("<s>", "</s>", "<unk>", None)
    assert info["vocab_size"] == 512 and info["model_max_length"] == settings.SANDBOX_MAX_PROMPT_TOKENS
    # Its chat template renders the conversation exactly as /v1/chat/completions does.
    jinja2 = pytest.importorskip("jinja2")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": " 2+2? "}]  # fmt: skip
    rendered = jinja2.Environment().from_string(info["chat_template"]).render(
        messages=messages, add_generation_prompt=True
    )
    assert rendered == chat_prompt([(m["role"], m["content"]) for m in messages])


def test_tokenize_reads_text_as_completions_do_and_detokenize_reverses_it(client, demo, researcher):
    _, tokenizer = demo
    headers = bearer(researcher)
    text = "The answer is</s>"

    plain = post(client, f"{BASE}/tokenize", {"prompt": text, "add_special_tokens": False}, **headers).json()
    default = post(client, f"{BASE}/tokenize", {"prompt": text}, **headers).json()

    assert plain["tokens"] == tokenizer.encode("The answer is", bos=False) + [tokenizer.eos_id]
    assert default["tokens"] == [tokenizer.bos_id] + plain["tokens"] and default["count"] == len(default["tokens"])
    # lm-eval takes eos_token_id = tokenize(eos_token)[0].
    eos = post(client, f"{BASE}/tokenize", {"prompt": "</s>", "add_special_tokens": False}, **headers).json()
    assert eos["tokens"] == [tokenizer.eos_id]
    back = post(client, f"{BASE}/detokenize", {"tokens": default["tokens"]}, **headers).json()
    assert back == {"prompt": "<s> The answer is</s>"}
    assert post(client, f"{BASE}/detokenize", {"tokens": plain["tokens"][:-1]}, **headers).json()["prompt"] == (
        "The answer is"
    )


def test_without_a_token_or_a_grant_the_tokenizer_is_closed(client, demo, outsider, researcher):
    no_token = client.get(f"{BASE}/tokenizer_info")
    assert no_token.status_code == 401 and no_token.json()["error"]["code"] == "invalid_api_key"
    bad_token = client.get(f"{BASE}/tokenizer_info", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad_token.status_code == 401
    for path, call in [
        ("tokenizer_info", lambda h: client.get(f"{BASE}/tokenizer_info", **h)),
        ("tokenize", lambda h: post(client, f"{BASE}/tokenize", {"prompt": "Hi"}, **h)),
        ("detokenize", lambda h: post(client, f"{BASE}/detokenize", {"tokens": [1, 2]}, **h)),
    ]:
        refused = call(bearer(outsider))
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "model_access_denied"
        assert "tokens" not in refused.json() and "prompt" not in refused.json()
    unknown = client.get("/sandbox/llama-999b/tokenizer_info", **bearer(researcher))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_a_browser_session_needs_the_csrf_token_to_post(demo, researcher):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(researcher)
    assert browser.get(f"{BASE}/tokenizer_info").status_code == 200
    refused = post(browser, f"{BASE}/tokenize", {"prompt": "Hi"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("tokenize", {"prompt": 5}, "prompt"),
        ("tokenize", {}, "prompt"),
        ("tokenize", {"prompt": "Hi", "add_special_tokens": "yes"}, "add_special_tokens"),
        ("tokenize", {"prompt": "x" * 32001}, "prompt"),
        ("tokenize", {"prompt": "bad \ud800 text"}, "prompt"),
        ("tokenize", [1, 2], None),
        ("detokenize", {"tokens": [1, 512]}, "tokens"),
        ("detokenize", {"tokens": [-1]}, "tokens"),
        ("detokenize", {"tokens": "1 2"}, "tokens"),
        ("detokenize", {"tokens": [1, True]}, "tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, demo, researcher, path, body, param):
    response = post(client, f"{BASE}/{path}", body, **bearer(researcher))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param


def test_not_json_and_wrong_methods_are_refused(client, demo, researcher):
    headers = bearer(researcher)
    not_json = client.post(f"{BASE}/tokenize", data=b"{not json", content_type="application/json", **headers)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    wrong = client.get(f"{BASE}/tokenize", **headers)
    assert wrong.status_code == 405 and wrong["Allow"] == "POST"
    assert post(client, f"{BASE}/tokenizer_info", {}, **headers).status_code == 405


def test_without_published_weights_the_tokenizer_is_unavailable(client, demo, researcher):
    from access.distribution.models import WeightFile

    variant, _ = demo
    sandbox_tokenizers_forget()
    WeightFile.objects.filter(variant=variant).delete()
    response = client.get(f"{BASE}/tokenizer_info", **bearer(researcher))
    assert response.status_code == 503 and response["Retry-After"]
    assert "publish_weights" in response.json()["error"]["message"]


def test_a_cached_tokenizer_that_no_longer_matches_is_fetched_again(client, demo, researcher, settings):
    headers = bearer(researcher)
    assert client.get(f"{BASE}/tokenizer_info", **headers).status_code == 200
    (cached,) = (settings.SANDBOX_CACHE_DIR / "llama-demo-tiny" / "tokenizers").glob("*.model")
    good = cached.read_bytes()
    cached.write_bytes(b"\0" * len(good))  # same size, wrong bytes
    sandbox_tokenizers_forget()

    response = post(client, f"{BASE}/tokenize", {"prompt": "Hi"}, **headers)

    assert response.status_code == 200 and response.json()["tokens"][0] == 1
    assert cached.read_bytes() == good


def test_limits_that_need_no_count_refuse_before_any_prompt_is_tokenized(client, demo, researcher):
    """Over the concurrency limit, a request is refused without reading its prompts: even when
    the tokenizer could not be had (it would be a 503), the answer is the 429."""
    from access.distribution.models import WeightFile
    from inference.sandbox.models import SandboxJob, SandboxQuota

    variant, _ = demo
    SandboxQuota.objects.create(user=researcher, concurrent_requests=0)
    sandbox_tokenizers_forget()
    WeightFile.objects.filter(variant=variant, name="tokenizer.model").delete()

    response = post(client, "/v1/completions", {"model": variant.slug, "prompt": "x " * 10_000}, **bearer(researcher))

    assert response.status_code == 429 and response.json()["error"]["code"] == "concurrent_requests_exceeded"
    assert not SandboxJob.objects.exists()
