from tests.conftest import bearer_client


def test_landing_page_lists_llama_sizes(client, llama_catalog):
    response = client.get("/")
    assert response.status_code == 200
    for name in ["LLaMA 7B", "LLaMA 13B", "LLaMA 33B", "LLaMA 65B", "LLaMA demo (tiny)"]:
        assert name in response.content.decode()


def test_reviewer_logs_in_with_totp_and_reaches_admin(reviewer_client):
    response = reviewer_client.get("/account/")
    assert response.status_code == 200


def test_token_authenticates_models_api(researcher, llama_catalog):
    api = bearer_client(researcher)
    response = api.get("/api/v1/models")
    assert response.status_code == 200
    assert response.json()["count"] == 5
