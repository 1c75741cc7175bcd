"""Input rules every app applies alike."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError


def text_length_check(*, field: str, text: str, limit: int | None = None) -> None:
    """Refuse free text (a note, a reason, a reply) longer than ``limit`` characters, by default
    REVIEW_TEXT_MAX_CHARS, with a message for ``field`` that says by how much."""
    limit = limit or settings.REVIEW_TEXT_MAX_CHARS
    if text and len(text) > limit:
        raise ValidationError({field: [f"Keep this under {limit:,} characters (it has {len(text):,})."]})
