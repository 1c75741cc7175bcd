"""Reading the body of ``POST /v1/completions`` and ``POST /v1/chat/completions`` as OpenAI
defines it, into what the engine needs; every bad field is a ``ParamError`` naming it, which the
API answers with 400 and OpenAI's ``param``. Limits are settings (``SANDBOX_MAX_*``), checked here
whatever the client sends.

LLaMA-1 has no chat format of its own, so chat messages become one completion prompt with a
simple template (``chat_prompt``), and generation stops where the next user turn would begin.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.conf import settings

# The chat template (docs/api.md "Sandbox"). A system message replaces the opening line.
CHAT_PREAMBLE = "A conversation between a user and a helpful assistant."
CHAT_ROLES = {"user": "User", "assistant": "Assistant"}
CHAT_STOP = "\n### User:"
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions
# The worker looks for every stop sequence's beginnings after each token: a long one would let one
# request slow down every job batched with it.
MAX_STOP_CHARS = 256


class ParamError(ValueError):
    """A request field OpenAI's API would refuse too: ``param`` names it, ``code`` is OpenAI's."""

    def __init__(self, message: str, *, param: str | None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class GenerationRequest:
    """One /v1/ request, checked. ``prompts`` are texts, or token ids when the client sent ids."""

    model: str
    prompts: tuple[str | tuple[int, ...], ...]
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: tuple[str, ...]
    seed: int | None
    logprobs: int | None
    stream: bool
    include_usage: bool
    user: str
    chat: bool = False
    # Chat without max_tokens: "until the turn ends", up to whatever cap the model has.
    max_tokens_open: bool = False
    # Completions: the prompt comes back before the completion, with its tokens' logprobs when
    # logprobs is set (the first token's null); with max_tokens 0 the prompt is only scored.
    echo: bool = False


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(constant: str):
    raise ParamError(f"{constant} is not a JSON number; send a finite number.", param=None, code="invalid_json")


def _has_lone_surrogate(value) -> bool:
    pending = [value]
    while pending:  # iterative: any depth the JSON parser accepted is fine
        item = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def request_body_parse(raw: bytes):
    """The body of a /v1/ request as JSON, or a ParamError: not JSON, nested too deeply to read,
    NaN or Infinity (not JSON numbers), or text with a lone UTF-16 surrogate (``\\ud800``, which
    is no Unicode character: it could be neither tokenized nor stored), named by its field."""
    try:
        body = json.loads(raw or b"null", parse_constant=_not_json)
    except ParamError:
        raise
    except RecursionError:
        raise ParamError("The request body is nested too deeply to read.", param=None, code="invalid_json") from None
    except ValueError:  # UnicodeDecodeError included
        raise ParamError("The request body must be JSON.", param=None, code="invalid_json") from None
    fields = body.items() if isinstance(body, dict) else [(None, body)]
    for name, value in fields:
        if _has_lone_surrogate(value) or _has_lone_surrogate(name):
            raise ParamError(
                "Text must be valid Unicode: it contains an unpaired surrogate (\\ud800 to \\udfff).",
                param=None if _has_lone_surrogate(name) else name,
            )
    return body


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _no_nul(value: str, param: str) -> str:
    # Text is stored with the job (PostgreSQL's text and jsonb hold no NUL), and no tokenizer
    # needs one: refused by name instead of failing later.
    if "\x00" in value:
        raise ParamError(f"'{param}' contains a NUL character (\\u0000), which the sandbox does not accept.", param=param)
    return value


def text_field(value, param: str) -> str:
    """A text field: a string without NUL, at most SANDBOX_MAX_PROMPT_CHARS characters."""
    if not isinstance(value, str):
        raise ParamError(f"'{param}' must be a string.", param=param)
    _no_nul(value, param)
    if len(value) > settings.SANDBOX_MAX_PROMPT_CHARS:
        limit = settings.SANDBOX_MAX_PROMPT_CHARS
        raise ParamError(f"'{param}' has {len(value):,} characters; the sandbox takes at most {limit:,}.", param=param)
    return value


def _token_ids(value, param: str) -> tuple[int, ...]:
    if not value:
        raise ParamError(f"'{param}' is an empty list of token ids.", param=param)
    if not all(_is_int(token) and token >= 0 for token in value):
        raise ParamError(f"'{param}' must hold token ids: whole numbers from 0.", param=param)
    return tuple(value)


def _prompts(value) -> tuple[str | tuple[int, ...], ...]:
    """A string, a list of strings, a list of token ids, or a list of lists of token ids."""
    if isinstance(value, str):
        return (text_field(value, "prompt"),)
    if not isinstance(value, list) or not value:
        raise ParamError(
            "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists.",
            param="prompt",
        )
    if all(_is_int(item) for item in value):
        return (_token_ids(value, "prompt"),)
    if len(value) > settings.SANDBOX_MAX_PROMPTS:
        raise ParamError(
            f"{len(value)} prompts in one request; the sandbox takes at most {settings.SANDBOX_MAX_PROMPTS}.",
            param="prompt",
        )
    if all(isinstance(item, str) for item in value):
        return tuple(text_field(item, f"prompt[{i}]") for i, item in enumerate(value))
    if all(isinstance(item, list) for item in value):
        return tuple(_token_ids(item, f"prompt[{i}]") for i, item in enumerate(value))
    raise ParamError("'prompt' mixes strings, token ids and lists; send one kind.", param="prompt")


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise ParamError("'stop' must be a string or a list of strings.", param="stop")
    if len(stops) > settings.SANDBOX_MAX_STOP_SEQUENCES:
        raise ParamError(
            f"{len(stops)} stop sequences; the sandbox takes at most {settings.SANDBOX_MAX_STOP_SEQUENCES}.",
            param="stop",
        )
    if any(len(stop) > MAX_STOP_CHARS for stop in stops):
        raise ParamError(f"Each stop sequence may be at most {MAX_STOP_CHARS} characters long.", param="stop")
    return tuple(_no_nul(stop, "stop") for stop in stops if stop)


def _number(body: dict, name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not _is_number(value) or value > high or value < low or (low_open and value == low):
        bound = f"more than {low:g}" if low_open else f"from {low:g}"
        raise ParamError(f"'{name}' must be a number {bound} to {high:g}.", param=name)
    return float(value)


def _whole(body: dict, name: str, default, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or not low <= value <= high:
        raise ParamError(f"'{name}' must be a whole number from {low} to {high}.", param=name)
    return value


def _common(body, *, model_required: bool, least_max_tokens: int = 1) -> dict:
    if not isinstance(body, dict):
        raise ParamError("The request body must be a JSON object.", param=None)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        if model_required or model is not None:
            raise ParamError("'model' is required: the slug of a model GET /v1/models lists.", param="model")
        model = ""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ParamError("'stream' must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise ParamError("'stream_options' is allowed only with 'stream': true.", param="stream_options")
    if options is not None and (
        not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool)
    ):
        raise ParamError("'stream_options' must be an object like {\"include_usage\": true}.", param="stream_options")
    user = body.get("user", "")
    if not isinstance(user, str) or len(user) > 256:
        raise ParamError("'user' must be a string of at most 256 characters.", param="user")
    _no_nul(user, "user")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise ParamError("'seed' must be a whole number.", param="seed")
    try:
        max_tokens = _whole(body, "max_tokens", DEFAULT_MAX_TOKENS, least_max_tokens, settings.SANDBOX_MAX_TOKENS)
    except ParamError:
        # 0 is for scoring only (completions with echo): the message names the usual range first.
        scoring = " (0 only with 'echo')" if least_max_tokens == 0 else ""
        raise ParamError(
            f"'max_tokens' must be a whole number from 1 to {settings.SANDBOX_MAX_TOKENS}{scoring}.", param="max_tokens"
        ) from None
    return {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": _number(body, "temperature", 1.0, 0, 2),
        "top_p": _number(body, "top_p", 1.0, 0, 1, low_open=True),
        "n": _whole(body, "n", 1, 1, settings.SANDBOX_MAX_CHOICES),
        "stop": _stop(body.get("stop")),
        "seed": seed,
        "stream": stream,
        "include_usage": bool(options and options.get("include_usage")),
        "user": user,
    }


def completion_request_parse(body, *, model: str | None = None) -> GenerationRequest:
    """``POST /v1/completions``. ``model`` is the one a per-model base URL names, which the body
    may then leave out."""
    fields = _common(body, model_required=model is None, least_max_tokens=0)
    if model is not None:
        if fields["model"] and fields["model"] != model:
            raise ParamError(f"This base URL serves {model!r} only.", param="model", code="model_not_found")
        fields["model"] = model
    echo = body.get("echo", False)
    if not isinstance(echo, bool):
        raise ParamError("'echo' must be true or false.", param="echo")
    if fields["max_tokens"] == 0 and not echo:
        raise ParamError(
            "'max_tokens': 0 generates nothing; with 'echo': true (and 'logprobs') it scores the prompt.",
            param="max_tokens",
        )
    if "prompt" not in body:
        raise ParamError("'prompt' is required.", param="prompt")
    logprobs = body.get("logprobs")
    if logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= 5):
        raise ParamError("'logprobs' must be a whole number from 0 to 5.", param="logprobs")
    prompts = _prompts(body["prompt"])
    if len(prompts) * fields["n"] > settings.SANDBOX_MAX_PROMPTS:
        raise ParamError(
            f"{len(prompts)} prompts with n={fields['n']} make {len(prompts) * fields['n']} completions; "
            f"the sandbox makes at most {settings.SANDBOX_MAX_PROMPTS} per request.",
            param="n",
        )
    return GenerationRequest(prompts=prompts, logprobs=logprobs, echo=echo, **fields)


def _message_text(message, index: int) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise ParamError(f"messages[{index}] must be an object with 'role' and 'content'.", param=f"messages[{index}]")
    role, content = message.get("role"), message.get("content")
    if role not in ("system", "user", "assistant"):
        raise ParamError(
            f"messages[{index}].role must be system, user or assistant.", param=f"messages[{index}].role"
        )
    if isinstance(content, list):  # content parts: only text parts mean anything to LLaMA
        if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                   for part in content):  # fmt: skip
            raise ParamError(
                f"messages[{index}].content parts must be text parts; this model reads no images or audio.",
                param=f"messages[{index}].content",
            )
        content = "".join(part["text"] for part in content)
    if not isinstance(content, str):
        raise ParamError(f"messages[{index}].content must be a string.", param=f"messages[{index}].content")
    return role, content


def chat_prompt(messages: list[tuple[str, str]]) -> str:
    """The completion prompt for a conversation: the preamble (or the system messages), then each
    turn as ``### User:`` / ``### Assistant:`` followed by its text, and an open assistant turn."""
    system = [content.strip() for role, content in messages if role == "system"]
    lines = ["\n\n".join(system) if system else CHAT_PREAMBLE]
    for role, content in messages:
        if role != "system":
            lines.append(f"### {CHAT_ROLES[role]}:\n{content.strip()}")
    lines.append(f"### {CHAT_ROLES['assistant']}:\n")
    return "\n\n".join(lines)


# chat_prompt as a Jinja template, for clients that render conversations themselves (the remote
# tokenizer's "chat_template", as transformers' apply_chat_template reads it); the tests check both agree.
CHAT_TEMPLATE = (
    "{%- set system = messages | selectattr('role', 'equalto', 'system') | map(attribute='content') "
    "| map('trim') | list -%}"
    "{{- system | join('\\n\\n') if system else '" + CHAT_PREAMBLE + "' -}}"
    "{%- for message in messages if message.role != 'system' -%}"
    "{{- '\\n\\n### ' + ('" + CHAT_ROLES["user"] + "' if message.role == 'user' else '"
    + CHAT_ROLES["assistant"] + "') + ':\\n' + message.content | trim -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n\\n### " + CHAT_ROLES["assistant"] + ":\\n' -}}{%- endif -%}"
)


def chat_request_parse(body, *, model: str | None = None) -> GenerationRequest:
    """``POST /v1/chat/completions``: the conversation as one prompt, stopping at the next user turn."""
    fields = _common(body, model_required=model is None)
    if model is not None:
        if fields["model"] and fields["model"] != model:
            raise ParamError(f"This base URL serves {model!r} only.", param="model", code="model_not_found")
        fields["model"] = model
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ParamError("'messages' must be a non-empty list of {role, content} objects.", param="messages")
    turns = [_message_text(message, i) for i, message in enumerate(messages)]
    if not any(role == "user" for role, _ in turns):
        raise ParamError("'messages' needs at least one user message.", param="messages")
    if "max_completion_tokens" in body and "max_tokens" not in body:
        fields["max_tokens"] = _whole(body, "max_completion_tokens", DEFAULT_MAX_TOKENS, 1, settings.SANDBOX_MAX_TOKENS)
    if body.get("max_tokens") is None and "max_completion_tokens" not in body:
        fields["max_tokens"] = settings.SANDBOX_MAX_TOKENS  # chat has no small default: until the turn ends
        fields["max_tokens_open"] = True
    logprobs = body.get("logprobs", False)
    top_logprobs = body.get("top_logprobs")
    if not isinstance(logprobs, bool):
        raise ParamError("'logprobs' must be true or false in chat.", param="logprobs")
    if top_logprobs is not None and (not _is_int(top_logprobs) or not 0 <= top_logprobs <= 5 or not logprobs):
        raise ParamError("'top_logprobs' must be 0 to 5, with 'logprobs': true.", param="top_logprobs")
    if fields["n"] > settings.SANDBOX_MAX_PROMPTS:
        raise ParamError(f"n may be at most {settings.SANDBOX_MAX_PROMPTS}.", param="n")
    prompt = text_field(chat_prompt(turns), "messages")
    fields["stop"] = (*fields["stop"], CHAT_STOP)
    return GenerationRequest(
        prompts=(prompt,), logprobs=(top_logprobs or 0) if logprobs else None, chat=True, **fields
    )
