"""Fixtures shared by the catalog tests: the seeded LLaMA slugs and a query counter."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

LLAMA_SLUGS = ["llama-7b", "llama-13b", "llama-33b", "llama-65b", "llama-demo-tiny"]


def _count_queries(client, url: str) -> int:
    client.get(url)  # warm up: a token's first use records last_used_at once
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        assert response.status_code == 200
    return len(queries)


@pytest.fixture
def llama_slugs() -> list[str]:
    """The slugs the LLaMA seed creates, in catalog order."""
    return list(LLAMA_SLUGS)


@pytest.fixture
def count_queries():
    """count_queries(client, url): the queries of one GET of url (after a warm-up GET), asserting 200."""
    return _count_queries
