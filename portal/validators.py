"""Input rules every app applies alike."""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.core.exceptions import ValidationError


def text_length_check(*, field: str, text: str, limit: int | None = None) -> None:
    """Refuse free text (a note, a reason, a reply) longer than ``limit`` characters, by default
    REVIEW_TEXT_MAX_CHARS, with a message for ``field`` that says by how much."""
    limit = limit or settings.REVIEW_TEXT_MAX_CHARS
    if text and len(text) > limit:
        raise ValidationError({field: [f"Keep this under {limit:,} characters (it has {len(text):,})."]})


# Characters that change how text is laid out without being seen. Zero-width joiners and
# directional marks have honest uses (Persian, Indic scripts, right-to-left names), so they
# are accepted in names but ignored when names are compared. Embeddings, overrides and
# isolates reorder what a reader sees ("Trojan Source"), so names refuse them.
ZERO_WIDTH_CHARACTERS = "\u200b\u200c\u200d\u2060\ufeff"
BIDI_MARKS = "\u200e\u200f\u061c"
BIDI_EMBEDDINGS_OVERRIDES_ISOLATES = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
BIDI_CONTROLS = BIDI_MARKS + BIDI_EMBEDDINGS_OVERRIDES_ISOLATES
_INVISIBLE_IN_COMPARISONS = str.maketrans("", "", ZERO_WIDTH_CHARACTERS + BIDI_CONTROLS)
_BIDI_CONTROLS_REMOVED = str.maketrans("", "", BIDI_CONTROLS)
_BIDI_REFUSED = frozenset(BIDI_EMBEDDINGS_OVERRIDES_ISOLATES)


def name_normalise(text: str) -> str:
    """The form of a name (or affiliation) that duplicate detection compares: NFKC, without
    zero-width or bidirectional control characters, case-folded, single spaces. Fullwidth "Ａｄａ",
    "Ada" with a zero-width space inside, and "ADA" all compare equal to "ada"."""
    text = unicodedata.normalize("NFKC", text or "").translate(_INVISIBLE_IN_COMPARISONS)
    # Case folding can leave text that is no longer in NFKC (e.g. "ǰ"), hence the second pass.
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())


def name_bidi_controls_strip(text: str) -> str:
    """The text without bidirectional control characters: for showing names stored before
    they were refused, so none can reorder the page around it."""
    return (text or "").translate(_BIDI_CONTROLS_REMOVED)


def name_bidi_refuse(value: str) -> None:
    """A field validator (forms, serializers, models): refuse text-direction embeddings,
    overrides and isolates in a name."""
    found = sorted({character for character in value or "" if character in _BIDI_REFUSED})
    if found:
        codes = ", ".join(f"U+{ord(character):04X}" for character in found)
        raise ValidationError(
            f"Remove the invisible text-direction control characters ({codes}): they make a name "
            "display differently from what it says. Type or paste it again as plain text.",
            code="bidi_control",
        )
