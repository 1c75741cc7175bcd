"""Markdown for model cards and license texts, rendered safely.

Raw HTML is not passed through (``html: False`` escapes it) and markdown-it's
link validation drops ``javascript:``, ``vbscript:``, ``file:`` and ``data:``
URLs, so a card can never inject markup or script."""

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown_render(text: str) -> SafeString:
    return mark_safe(_renderer.render(text or ""))  # noqa: S308 (escaped by the renderer, see above)
