"""The catalog API (docs/api.md "Models"): the paginated list of variants with the caller's access,
a variant's detail with its model card and current license, and a query count that does not grow
with the catalog."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from tests.factories import ModelVariantFactory

# docs/api.md: every variant in the list has at least these fields.
VARIANT_FIELDS = {"slug", "name", "family", "parameters", "training_tokens", "sandbox", "access"}


def test_models_api_lists_variants_in_a_paginated_envelope(api_client, llama_catalog, llama_slugs):
    response = api_client.get("/api/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 5
    assert body["next"] is None
    assert body["previous"] is None
    assert [item["slug"] for item in body["results"]] == llama_slugs


def test_models_api_gives_each_variant_the_documented_fields(api_client, llama_catalog):
    results = api_client.get("/api/v1/models").json()["results"]

    for item in results:
        assert VARIANT_FIELDS <= set(item), item
        assert "model_card" not in item  # the list stays light; the card is on the detail
    seven_b = results[0]
    assert seven_b["slug"] == "llama-7b"
    assert seven_b["name"] == "LLaMA 7B"
    assert seven_b["family"] == "llama"
    assert seven_b["parameters"] == 6_738_415_616
    assert seven_b["training_tokens"] == 1_000_000_000_000
    assert seven_b["sandbox"] is True


def test_models_api_reports_no_access_to_anonymous_callers(api_client, llama_catalog):
    results = api_client.get("/api/v1/models").json()["results"]

    assert {item["access"] for item in results} == {"none"}


def test_models_api_reports_no_access_to_a_researcher_without_requests(researcher, llama_catalog, bearer_client):
    response = bearer_client(researcher).get("/api/v1/models")

    assert response.status_code == 200
    assert {item["access"] for item in response.json()["results"]} == {"none"}


def test_models_api_pages_long_catalogs(api_client, llama_catalog):
    body = api_client.get("/api/v1/models", {"page_size": 2}).json()

    assert body["count"] == 5
    assert len(body["results"]) == 2
    assert body["previous"] is None
    assert body["next"].startswith("http://testserver/api/v1/models?")
    assert "page=2" in body["next"]


def test_model_detail_api_adds_the_model_card_and_current_license(api_client, llama_catalog):
    current = license_current(llama_catalog)

    response = api_client.get("/api/v1/models/llama-65b")

    assert response.status_code == 200
    body = response.json()
    assert VARIANT_FIELDS | {"model_card", "license"} <= set(body)
    assert body["slug"] == "llama-65b"
    assert body["access"] == "none"
    assert body["model_card"].startswith("# LLaMA 65B\n")
    assert body["license"] == {"id": current.pk, "version": "1.0", "sha256": current.sha256}


def test_model_detail_api_answers_404_with_the_error_body_for_an_unknown_slug(api_client, llama_catalog):
    response = api_client.get("/api/v1/models/llama-1000b")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"]


def test_model_detail_api_hides_unlisted_variants(api_client, llama_catalog):
    ModelVariant.objects.filter(slug="llama-13b").update(is_listed=False)

    assert api_client.get("/api/v1/models/llama-13b").status_code == 404
    slugs = [item["slug"] for item in api_client.get("/api/v1/models").json()["results"]]
    assert "llama-13b" not in slugs


@pytest.mark.parametrize("caller", ["anonymous", "researcher"])
def test_models_api_query_count_does_not_grow_with_the_catalog(
    caller, researcher, llama_catalog, bearer_client, count_queries
):
    client = bearer_client(researcher) if caller == "researcher" else APIClient()
    with_five = count_queries(client, "/api/v1/models")

    ModelVariantFactory.create_batch(25, family=llama_catalog)
    ModelVariantFactory.create_batch(5)  # other families too
    assert client.get("/api/v1/models").json()["count"] == 35
    with_thirty_five = count_queries(client, "/api/v1/models")

    assert with_thirty_five == with_five
