"""A researcher with sandbox access, through the same grant rules as downloads."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from portal.services import api_token_create


@pytest.fixture
def sandbox_grant(researcher, reviewer, llama_catalog, active_grant_make):
    """An active grant for llama-7b, which the seeded catalog offers in the sandbox."""
    return active_grant_make(user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), reviewer=reviewer)


@pytest.fixture
def api_key():
    """api_key(user): a new personal API token's secret, as the openai client's api_key."""

    def make(user) -> str:
        return api_token_create(user=user, name="sandbox test")[1]

    return make
