"""The API's one JSON parser (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES): DRF's, plus the refusals
that keep any JSON a client can send a 400 naming the field, never a crash further in.

- A body nested too deeply for Python's parser (``[[[[...``) is a parse error, not a RecursionError.
- Numbers must be finite: ``NaN`` and ``Infinity`` are not JSON, and ``1e400`` overflows a float;
  refused by field instead of reaching an id lookup as ``inf``.
- Text must be storable: PostgreSQL refuses NUL (``\\u0000``) in text, and a lone UTF-16
  surrogate (``\\ud800``) is not Unicode that can be stored or even written back as UTF-8. Both
  are refused wherever they are in the body, keys included, so no field can forget the check.
"""

from __future__ import annotations

import codecs
import json
import math
import re

from rest_framework import exceptions, parsers

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
NUL_MESSAGE = "Text cannot contain NUL characters (\\u0000); remove them and send it again."
SURROGATE_MESSAGE = (
    "Text must be valid Unicode: it contains an unpaired surrogate (\\ud800 to \\udfff). Send it as UTF-8."
)


class _NonFiniteNumber:
    """Where the body had NaN, Infinity or a number too large for a float (kept as written)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NonFiniteNumber(text)


def _text_problem(text: str) -> str | None:
    found = _UNSTORABLE_TEXT.search(text)
    if found is None:
        return None
    return NUL_MESSAGE if found.group() == "\x00" else SURROGATE_MESSAGE


def _value_problem(value) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, _NonFiniteNumber):
        return f"{value.text[:40]} is not a number this API takes: send a finite JSON number."
    return None


def _field_name(key: str) -> str:
    # A key that is itself unstorable is named escaped, so the error body stays valid UTF-8.
    return json.dumps(key)[1:-1] if _text_problem(key) else key


def json_body_problems(data) -> dict[str, str] | str | None:
    """The first problem under each top-level field (``{field: message}``), the problem of a body
    that is not an object (a message), or None. Iterative: any depth the parser accepted is fine."""
    if not isinstance(data, dict):
        return _first_problem(data)
    problems = {}
    for key, value in data.items():
        problem = _text_problem(key) or _first_problem(value)
        if problem:
            problems[_field_name(key)] = problem
    return problems or None


def _first_problem(value) -> str | None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(key)
                if problem:
                    return problem
                pending.append(child)
        elif isinstance(item, list):
            pending.extend(item)
        else:
            problem = _value_problem(item)
            if problem:
                return problem
    return None


class PortalJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            data = json.load(codecs.getreader(encoding)(stream), parse_constant=_NonFiniteNumber, parse_float=_float)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - the body is nested too deeply. Send an object whose fields the endpoint documents."
            ) from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        problems = json_body_problems(data)
        if problems:
            raise exceptions.ValidationError(problems if isinstance(problems, dict) else [problems])
        return data
