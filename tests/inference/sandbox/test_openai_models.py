"""The official openai client against the sandbox's model endpoints on a live server: what it
lists and retrieves, and that each refusal raises the client's own exception."""

from __future__ import annotations

import openai
import pytest

from access.grants.services import grant_suspend


def _client(live_server, key: str, base: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}{base}", api_key=key, max_retries=0, timeout=10)


@pytest.fixture
def researcher_client(live_server, researcher, api_key):
    return _client(live_server, api_key(researcher))


def test_the_client_lists_only_the_models_the_researcher_may_use(researcher_client, sandbox_grant):
    models = researcher_client.models.list()

    assert [model.id for model in models] == ["llama-7b"]
    assert models.data[0].object == "model" and models.data[0].owned_by == "llama" and models.data[0].created > 0


def test_the_client_retrieves_a_granted_model(researcher_client, sandbox_grant):
    assert researcher_client.models.retrieve("llama-7b").id == "llama-7b"


def test_a_model_not_in_the_sandbox_raises_not_found(researcher_client, sandbox_grant):
    with pytest.raises(openai.NotFoundError) as raised:
        researcher_client.models.retrieve("llama-13b")

    assert raised.value.code == "model_not_found"


def test_a_suspended_grant_raises_permission_denied_with_the_reason(researcher_client, reviewer, sandbox_grant):
    grant_suspend(grant=sandbox_grant, actor=reviewer, reason="Checking.")

    with pytest.raises(openai.PermissionDeniedError) as raised:
        researcher_client.models.retrieve("llama-7b")

    assert raised.value.code == "model_access_denied" and "suspended" in raised.value.message
    assert [model.id for model in researcher_client.models.list()] == []


@pytest.mark.parametrize("key", ["mwp_not-a-real-token", "sk-openai-key"])
def test_an_unknown_key_raises_authentication_error(live_server, sandbox_grant, key):
    with pytest.raises(openai.AuthenticationError) as raised:
        _client(live_server, key).models.list()

    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"
    assert raised.value.body["type"] == "invalid_request_error" and "account page" in raised.value.message


def test_the_per_model_base_url_serves_that_model_only(live_server, researcher, api_key, sandbox_grant):
    client = _client(live_server, api_key(researcher), base="/sandbox/llama-7b/v1")

    assert [model.id for model in client.models.list()] == ["llama-7b"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("llama-13b")
    with pytest.raises(openai.PermissionDeniedError):
        _client(live_server, api_key(researcher), base="/sandbox/llama-demo-tiny/v1").models.list()


def test_an_endpoint_the_sandbox_lacks_answers_in_openais_error_shape(researcher_client, sandbox_grant):
    with pytest.raises(openai.NotFoundError) as raised:
        researcher_client.embeddings.create(model="llama-7b", input="hello")

    assert raised.value.code == "not_found" and set(raised.value.body) == {"message", "type", "param", "code"}
