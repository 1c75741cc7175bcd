"""Fixtures shared by the grants tests: holders whose addresses contain one another's, and the
reviewers' email filter cases every grant list (selector, page, API) must answer alike."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from access.grants.services import grant_create
from tests.factories import UserFactory

# (what the reviewer types, the holders it must find). A whole address (an "@" and a dot after
# it) matches that address exactly, case aside, and not a longer one that contains it; anything
# else is part of an address and matches as a substring.
EMAIL_FILTER_CASES = [
    ("ada@uni.example.edu", {"ada@uni.example.edu"}),
    ("ADA@Uni.Example.EDU", {"ada@uni.example.edu"}),
    ("  ada@uni.example.edu  ", {"ada@uni.example.edu"}),
    ("nada@uni.example.edu", {"nada@uni.example.edu"}),
    ("ada@uni", {"ada@uni.example.edu", "nada@uni.example.edu", "ada@uni.example.edu.au"}),
    ("NADA", {"nada@uni.example.edu"}),
    ("example.edu", {"ada@uni.example.edu", "nada@uni.example.edu", "ada@uni.example.edu.au"}),
    ("elsewhere", {"eve@elsewhere.example.com"}),
    ("nobody@uni.example.edu", set()),
]


def pytest_generate_tests(metafunc):
    if "email_filter_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "email_filter_case",
            EMAIL_FILTER_CASES,
            ids=[query if query == query.strip() else f"spaced-{query.strip()}" for query, _ in EMAIL_FILTER_CASES],
        )


@pytest.fixture
def grants_by_holder(researcher, outsider, reviewer, llama_catalog) -> dict[str, int]:
    """A llama-7b grant for each of four holders, by email: Ada (ada@uni.example.edu), two whose
    addresses contain hers (nada@uni.example.edu, ada@uni.example.edu.au) and Eve."""
    variant = ModelVariant.objects.get(slug="llama-7b")
    holders = [researcher, UserFactory(email="nada@uni.example.edu"), UserFactory(email="ada@uni.example.edu.au")]
    holders.append(outsider)
    return {
        holder.email: grant_create(user=holder, variant=variant, actor=reviewer, reason="Collaborator.").pk
        for holder in holders
    }
