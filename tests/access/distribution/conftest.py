"""Fixtures shared by the download tests (links, pages, API and the gateway): an active grant of the
published demo weights and a bundle of links for it; what a client receives and its digest.

``active_grant_make`` (tests/conftest.py, the browser tests use it too) makes an active grant of any
variant; ``published_demo_weights`` and the storage fixtures are in tests/storage_fixtures.py.
"""

from __future__ import annotations

import hashlib

import pytest

from access.distribution.bundles import bundle_create


def _body_of(response) -> bytes:
    """All the bytes a client receives, streamed or not. The test client closes a streamed
    response once its content is consumed, as a server does."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def _sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bundle_make(active_grant_make):
    """bundle_make(user=, variant=, reviewer=, **grant_create_kwargs): an active grant's new bundle of links."""

    def make(*, user, variant, reviewer, **kwargs):
        grant = active_grant_make(user=user, variant=variant, reviewer=reviewer, **kwargs)
        return bundle_create(grant=grant, user=user)

    return make


@pytest.fixture
def body_of():
    """body_of(response): all the bytes a client receives, streamed or not."""
    return _body_of


@pytest.fixture
def sha256_of():
    """sha256_of(data): the hex SHA-256 of the bytes."""
    return _sha256_of


@pytest.fixture
def grant(published_demo_weights, researcher, reviewer, active_grant_make):
    """The researcher's active grant of the published demo weights."""
    variant, _, _ = published_demo_weights
    return active_grant_make(user=researcher, variant=variant, reviewer=reviewer)


@pytest.fixture
def bundle(published_demo_weights, researcher, reviewer, bundle_make):
    """A bundle of links to the published demo weights, for the researcher's active grant."""
    variant, _, _ = published_demo_weights
    return bundle_make(user=researcher, variant=variant, reviewer=reviewer)
