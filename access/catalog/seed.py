"""The LLaMA-1 catalog as released in February 2023 (7B, 13B, 33B, 65B), its license and model
card, and the tiny demo variant; idempotent, so ``seed_catalog`` can run at every deploy.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from access.audit.services import audit_event_record
from access.catalog.models import ModelFamily, ModelVariant
from access.catalog.services import TINY_DEMO, license_publish

SEED_DIR = Path(__file__).resolve().parent / "texts"
LLAMA_LANGUAGES = [
    "bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu",
    "it", "nl", "pl", "pt", "ro", "ru", "sl", "sr", "sv", "uk",
]  # fmt: skip
LLAMA_LANGUAGE_NAMES = (
    "Bulgarian, Catalan, Czech, Danish, German, English, Spanish, French, Croatian, Hungarian, "
    "Italian, Dutch, Polish, Portuguese, Romanian, Russian, Slovenian, Serbian, Swedish and Ukrainian"
)
# Hyper-parameters as published in the LLaMA paper (Touvron et al., 2023, table 2).
LLAMA_VARIANTS = [
    # slug, size, parameters, training tokens, dim, heads, layers, lr, shards, approvals, sandbox
    ("llama-7b", "7B", 6_738_415_616, 1_000_000_000_000, 4096, 32, 32, "3.0e-4", 1, 1, True),
    ("llama-13b", "13B", 13_015_864_320, 1_000_000_000_000, 5120, 40, 40, "3.0e-4", 2, 1, False),
    ("llama-33b", "33B", 32_528_943_616, 1_400_000_000_000, 6656, 52, 60, "1.5e-4", 4, 1, False),
    ("llama-65b", "65B", 65_286_012_928, 1_400_000_000_000, 8192, 64, 80, "1.5e-4", 8, 2, False),
]

# The folders Meta's February 2023 download.sh fetches each size into: it called the 33B model "30B".
META_FOLDERS = {"7B": "7B", "13B": "13B", "33B": "30B", "65B": "65B"}


def llama_parameter_count(*, dim: int, n_layers: int, vocab_size: int, multiple_of: int, **_) -> int:
    hidden = int(2 * (4 * dim) / 3)
    hidden = multiple_of * ((hidden + multiple_of - 1) // multiple_of)
    per_layer = 4 * dim * dim + 3 * dim * hidden + 2 * dim
    return 2 * vocab_size * dim + n_layers * per_layer + dim


def _shard_names(count: int) -> str:
    names = [f"`consolidated.{index:02d}.pth`" for index in range(count)]
    return ", ".join(names)


@transaction.atomic
def catalog_seed_llama(*, actor=None) -> ModelFamily:
    """Create the LLaMA family, its variants and license v1.0. Idempotent:
    existing rows are left as operators may have edited them."""
    family, created = ModelFamily.objects.get_or_create(
        slug="llama",
        defaults={
            "name": "LLaMA",
            "summary": (
                "Foundation language models from 7B to 65B parameters, released in February 2023 "
                "under a non-commercial research license, case by case to approved researchers."
            ),
            "released_on": dt.date(2023, 2, 24),
            "training_languages": LLAMA_LANGUAGES,
        },
    )
    if created:
        audit_event_record(action="catalog.family_created", actor=actor, target=family)

    card_template = (SEED_DIR / "llama-model-card.md").read_text()
    for position, (slug, size, params, tokens, dim, heads, layers, lr, shards, approvals, sandbox) in enumerate(
        LLAMA_VARIANTS
    ):
        card = card_template.format(
            name=f"LLaMA {size}",
            size=size,
            tokens=f"{tokens / 1e12:.1f}T",
            parameters=f"{params:,}",
            dim=dim,
            heads=heads,
            layers=layers,
            lr=lr,
            languages=LLAMA_LANGUAGE_NAMES,
            shards=_shard_names(shards),
        )
        _variant_seed(
            family=family,
            slug=slug,
            name=f"LLaMA {size}",
            parameters=params,
            training_tokens=tokens,
            model_card=card,
            sandbox=sandbox,
            approvals_required=approvals,
            meta_folder=META_FOLDERS[size],
            # Export rules apply to the real weights; the tiny demo below stays open to try the flow.
            auto_reject_embargoed=True,
            position=position,
            actor=actor,
        )

    tiny_params = llama_parameter_count(**TINY_DEMO)
    _variant_seed(
        family=family,
        slug="llama-demo-tiny",
        name="LLaMA demo (tiny)",
        parameters=tiny_params,
        training_tokens=0,
        model_card=(
            "# LLaMA demo (tiny)\n\n"
            "A tiny checkpoint with the exact LLaMA architecture and Meta's file layout, "
            f"with random weights ({tiny_params:,} parameters: dimension {TINY_DEMO['dim']}, "
            f"{TINY_DEMO['n_layers']} layers, {TINY_DEMO['n_heads']} heads, a {TINY_DEMO['vocab_size']}-token "
            "vocabulary). It is generated locally by `make_tiny_llama`, so the whole "
            "request, review, license, download and sandbox flow can be tried on a laptop. "
            "Its output is noise: it was never trained.\n"
        ),
        sandbox=True,
        approvals_required=1,
        meta_folder="tiny",
        position=len(LLAMA_VARIANTS),
        actor=actor,
    )

    if not family.licenses.exists():
        license_publish(
            family=family,
            version="1.0",
            title="LLaMA Non-Commercial Research License",
            text=(SEED_DIR / "llama-license-v1.md").read_text(),
            effective_at=timezone.make_aware(dt.datetime(2023, 2, 24)),
            actor=actor,
        )
    return family


def _variant_seed(*, family, slug, actor, **fields) -> ModelVariant:
    variant = ModelVariant.objects.filter(slug=slug).first()
    if variant is not None:
        return variant
    variant = ModelVariant(family=family, slug=slug, **fields)
    variant.full_clean()
    variant.save()
    audit_event_record(action="catalog.variant_created", actor=actor, target=variant, details={"slug": slug})
    return variant


