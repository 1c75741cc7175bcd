"""Requests waiting for a reviewer, shared by the review tests (services and pages)."""

from __future__ import annotations

import pytest


@pytest.fixture
def pending(researcher, llama_catalog, submit):
    """A clean request for 7B and 13B, waiting for a reviewer."""
    return submit(researcher, "llama-7b", "llama-13b")


@pytest.fixture
def pending_65b(researcher, llama_catalog, submit):
    """A request for 65B, which needs the approvals of two reviewers."""
    return submit(researcher, "llama-65b")
