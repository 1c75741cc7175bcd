"""The public catalog: the seeded LLaMA family, its pages and its API."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.audit.models import AuditEvent
from access.catalog.models import LicenseVersion, ModelFamily, ModelVariant
from access.catalog.seed import catalog_seed_llama
from access.catalog.selectors import license_current
from tests.conftest import bearer_client
from tests.factories import ModelVariantFactory

LLAMA_SLUGS = ["llama-7b", "llama-13b", "llama-33b", "llama-65b", "llama-demo-tiny"]
# docs/api.md: every variant in the list has at least these fields.
VARIANT_FIELDS = {"slug", "name", "family", "parameters", "training_tokens", "sandbox", "access"}

HOSTILE_CARD = (
    "# Innocent model\n\n"
    "<script>alert(1)</script>\n\n"
    "<img src=x onerror=alert(1)>\n\n"
    "Read [x](javascript:alert(1)) for details.\n"
)


def _model_card_html(response) -> str:
    match = re.search(r'<article class="model-card">(.*?)</article>', response.content.decode(), re.S)
    assert match, "the variant page has no model card"
    return match.group(1)


# --- Seeding -------------------------------------------------------------------------


def test_seeding_llama_twice_creates_each_row_and_audit_event_once(db):
    catalog_seed_llama()
    events_after_first_seed = AuditEvent.objects.count()

    catalog_seed_llama()

    assert ModelFamily.objects.count() == 1
    assert ModelVariant.objects.count() == 5
    assert LicenseVersion.objects.count() == 1
    assert AuditEvent.objects.count() == events_after_first_seed
    assert AuditEvent.objects.filter(action="catalog.variant_created").count() == 5
    assert AuditEvent.objects.filter(action="catalog.family_created").count() == 1
    assert AuditEvent.objects.filter(action="license.published").count() == 1


def test_seed_catalog_command_can_be_run_again_safely(db):
    out = io.StringIO()
    call_command("seed_catalog", stdout=out)
    call_command("seed_catalog", stdout=out)

    assert sorted(ModelVariant.objects.values_list("slug", flat=True)) == sorted(LLAMA_SLUGS)
    assert LicenseVersion.objects.count() == 1


def test_seeding_keeps_what_an_operator_edited(llama_catalog):
    ModelVariant.objects.filter(slug="llama-7b").update(name="LLaMA 7B (edited)", sandbox=False)

    catalog_seed_llama()

    variant = ModelVariant.objects.get(slug="llama-7b")
    assert variant.name == "LLaMA 7B (edited)"
    assert variant.sandbox is False


def test_seeded_llama_family_has_the_published_sizes_and_token_counts(llama_catalog):
    variants = {variant.slug: variant for variant in llama_catalog.variants.all()}

    assert sorted(variants) == sorted(LLAMA_SLUGS)
    assert variants["llama-7b"].training_tokens == 1_000_000_000_000
    assert variants["llama-13b"].training_tokens == 1_000_000_000_000
    assert variants["llama-33b"].training_tokens == 1_400_000_000_000
    assert variants["llama-65b"].training_tokens == 1_400_000_000_000
    assert [variants[slug].parameters // 10**9 for slug in LLAMA_SLUGS[:4]] == [6, 13, 32, 65]


def test_seeded_llama_family_was_trained_on_twenty_languages(llama_catalog):
    assert len(llama_catalog.training_languages) == 20
    assert len(set(llama_catalog.training_languages)) == 20
    assert "en" in llama_catalog.training_languages


def test_only_the_largest_llama_needs_two_reviewers(llama_catalog):
    approvals = dict(llama_catalog.variants.values_list("slug", "approvals_required"))

    assert approvals == {"llama-7b": 1, "llama-13b": 1, "llama-33b": 1, "llama-65b": 2, "llama-demo-tiny": 1}


def test_seed_publishes_license_one_point_zero_as_the_current_license(llama_catalog):
    current = license_current(llama_catalog)

    assert current is not None
    assert current.version == "1.0"
    assert len(current.sha256) == 64


# --- Pages ---------------------------------------------------------------------------


def test_landing_page_shows_every_variant_as_not_requested_to_anonymous_visitors(client, llama_catalog):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    for slug in LLAMA_SLUGS:
        assert f'href="/models/{slug}/"' in html
    assert html.count("Not requested") == 5
    assert "Create an account to apply" in html


def test_landing_page_shows_every_variant_as_not_requested_to_a_new_researcher(researcher_client, llama_catalog):
    response = researcher_client.get("/")

    assert response.status_code == 200
    assert response.content.decode().count("Not requested") == 5


def test_landing_page_rejects_post(client, llama_catalog):
    assert client.post("/").status_code == 405


def test_variant_page_renders_the_model_card_markdown_as_html(client, llama_catalog):
    response = client.get("/models/llama-65b/")

    assert response.status_code == 200
    card = _model_card_html(response)
    assert "<h1>LLaMA 65B</h1>" in card
    assert "<h2>Model details</h2>" in card
    assert "<table>" in card
    assert "<strong>1.4T</strong>" in card
    assert "**" not in card
    assert "approval by 2 different reviewers" in response.content.decode()


def test_variant_page_shows_hostile_model_card_markup_as_inert_text(client, db):
    ModelVariantFactory(slug="hostile-7b", model_card=HOSTILE_CARD)

    response = client.get("/models/hostile-7b/")

    assert response.status_code == 200
    card = _model_card_html(response)
    assert "<script" not in card.lower()
    assert "<img" not in card.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in card
    assert "&lt;img src=x onerror=alert(1)&gt;" in card
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", card, re.I)
    assert "javascript:" not in "".join(re.findall(r"<a\b[^>]*>", card)).lower()


def test_unknown_variant_page_is_a_404_page(client, llama_catalog):
    response = client.get("/models/llama-1000b/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_unlisted_variant_page_is_a_404_page(client, llama_catalog):
    ModelVariant.objects.filter(slug="llama-13b").update(is_listed=False)

    assert client.get("/models/llama-13b/").status_code == 404
    assert "llama-13b" not in client.get("/").content.decode()


# --- API -----------------------------------------------------------------------------


def test_models_api_lists_variants_in_a_paginated_envelope(api_client, llama_catalog):
    response = api_client.get("/api/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 5
    assert body["next"] is None
    assert body["previous"] is None
    assert [item["slug"] for item in body["results"]] == LLAMA_SLUGS


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


def test_models_api_reports_no_access_to_a_researcher_without_requests(researcher, llama_catalog):
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


def _count_queries(client, url: str) -> int:
    client.get(url)  # warm up: a token's first use records last_used_at once
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("caller", ["anonymous", "researcher"])
def test_models_api_query_count_does_not_grow_with_the_catalog(caller, researcher, llama_catalog):
    client = bearer_client(researcher) if caller == "researcher" else APIClient()
    with_five = _count_queries(client, "/api/v1/models")

    ModelVariantFactory.create_batch(25, family=llama_catalog)
    ModelVariantFactory.create_batch(5)  # other families too
    assert client.get("/api/v1/models").json()["count"] == 35
    with_thirty_five = _count_queries(client, "/api/v1/models")

    assert with_thirty_five == with_five


def test_landing_page_query_count_does_not_grow_with_the_catalog(client, llama_catalog):
    with_five = _count_queries(client, "/")

    ModelVariantFactory.create_batch(25, family=llama_catalog)
    ModelVariantFactory.create_batch(5)
    with_thirty_five = _count_queries(client, "/")

    assert with_thirty_five == with_five
