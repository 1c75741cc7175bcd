"""Seeding the LLaMA family (``catalog_seed_llama``, ``manage.py seed_catalog``): its sizes, token
counts, languages, two-person rule and first license, once however often it runs."""

from __future__ import annotations

import io

from django.core.management import call_command

from access.audit.models import AuditEvent
from access.catalog.models import LicenseVersion, ModelFamily, ModelVariant
from access.catalog.seed import catalog_seed_llama
from access.catalog.selectors import license_current
from access.review.models import RejectionTemplate
from access.review.seed import REJECTION_TEMPLATES


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


def test_seed_catalog_command_can_be_run_again_safely(db, llama_slugs):
    out = io.StringIO()
    call_command("seed_catalog", stdout=out)
    call_command("seed_catalog", stdout=out)

    assert sorted(ModelVariant.objects.values_list("slug", flat=True)) == sorted(llama_slugs)
    assert LicenseVersion.objects.count() == 1
    # The reviewers' rejection templates come with the release's starting data.
    assert sorted(RejectionTemplate.objects.values_list("title", flat=True)) == sorted(t for t, _ in REJECTION_TEMPLATES)


def test_seeding_keeps_what_an_operator_edited(llama_catalog):
    ModelVariant.objects.filter(slug="llama-7b").update(name="LLaMA 7B (edited)", sandbox=False)

    catalog_seed_llama()

    variant = ModelVariant.objects.get(slug="llama-7b")
    assert variant.name == "LLaMA 7B (edited)"
    assert variant.sandbox is False


def test_seeded_llama_family_has_the_published_sizes_and_token_counts(llama_catalog, llama_slugs):
    variants = {variant.slug: variant for variant in llama_catalog.variants.all()}

    assert sorted(variants) == sorted(llama_slugs)
    assert variants["llama-7b"].training_tokens == 1_000_000_000_000
    assert variants["llama-13b"].training_tokens == 1_000_000_000_000
    assert variants["llama-33b"].training_tokens == 1_400_000_000_000
    assert variants["llama-65b"].training_tokens == 1_400_000_000_000
    assert [variants[slug].parameters // 10**9 for slug in llama_slugs[:4]] == [6, 13, 32, 65]


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
