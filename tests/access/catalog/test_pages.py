"""The public catalog pages: the landing page with every variant and the caller's access to it, a
variant's page with its model card (hostile markup shown as inert text), and a query count that
does not grow with the catalog."""

from __future__ import annotations

import re

from access.catalog.models import ModelVariant
from tests.factories import ModelVariantFactory

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


# --- Pages ---------------------------------------------------------------------------


def test_landing_page_shows_every_variant_as_not_requested_to_anonymous_visitors(client, llama_catalog, llama_slugs):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    for slug in llama_slugs:
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


def test_landing_page_query_count_does_not_grow_with_the_catalog(client, llama_catalog, count_queries):
    with_five = count_queries(client, "/")

    ModelVariantFactory.create_batch(25, family=llama_catalog)
    ModelVariantFactory.create_batch(5)
    with_thirty_five = count_queries(client, "/")

    assert with_thirty_five == with_five
