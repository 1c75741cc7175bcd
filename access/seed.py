"""The starting data of a LLaMA release, across domains: the catalog (the family, its variants,
license 1.0 and the tiny demo variant) and the reviewers' rejection templates. Idempotent, so
``seed_catalog`` runs at every deploy and ``seed_demo`` at every ``make run``."""

from __future__ import annotations

from access.catalog.models import ModelFamily
from access.catalog.seed import catalog_seed_llama
from access.review.seed import rejection_templates_seed


def llama_release_seed(*, actor=None) -> ModelFamily:
    family = catalog_seed_llama(actor=actor)
    rejection_templates_seed(actor=actor)
    return family
