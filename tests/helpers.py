"""Small helpers that test modules share (plain functions, like tests/factories.py): the clock
and email bodies."""

from __future__ import annotations

from unittest import mock


def clock_at(moment):
    """``with clock_at(moment):`` runs the block as if the clock showed ``moment``."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


def html_of(message) -> str:
    """The HTML alternative of an email; every email of the portal has exactly one."""
    htmls = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    assert len(htmls) == 1, message.alternatives
    return htmls[0]
