"""A job's stream of events, shaped as OpenAI's responses: ``text_completion`` and
``chat.completion`` objects, their streamed chunks, and the ``logprobs`` of each.

The worker sends, per job, ``delta`` events holding new text per choice (and, when logprobs were
asked for, each new token with its logprob and the most likely alternatives), then ``done`` with
the usage, or ``error``.
"""

from __future__ import annotations

import json
import math


def _number(value: float | None) -> float | None:
    """JSON has no -inf: a token the model gave probability 0 is reported with the lowest float."""
    if value is None or math.isfinite(value):
        return value
    return -9999.0


class ResponseBuilder:
    def __init__(self, *, job_id: str, model: str, created: int, chat: bool, choices: int, logprobs: int | None,
                 include_usage: bool):  # fmt: skip
        self.id, self.model, self.created, self.chat = job_id, model, created, chat
        self.logprobs = logprobs
        self.include_usage = include_usage
        self.texts = [""] * choices
        self.finish = [None] * choices
        self.tokens: list[list[dict]] = [[] for _ in range(choices)]
        self.usage: dict | None = None

    # --- whole responses --------------------------------------------------------------------------

    def add(self, event: dict) -> None:
        if event["type"] == "delta":
            for choice in event["choices"]:
                i = choice["index"]
                self.texts[i] += choice["text"]
                self.finish[i] = choice["finish_reason"] or self.finish[i]
                self.tokens[i].extend(choice.get("tokens", ()))
        elif event["type"] == "done":
            self.usage = event["usage"]

    def response(self) -> dict:
        if self.chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": self.texts[i], "refusal": None},
                    "logprobs": self._chat_logprobs(self.tokens[i]),
                    "finish_reason": self.finish[i],
                }
                for i in range(len(self.texts))
            ]
            obj = "chat.completion"
        else:
            choices = [
                {
                    "index": i,
                    "text": self.texts[i],
                    "logprobs": self._completion_logprobs(self.tokens[i], 0),
                    "finish_reason": self.finish[i],
                }
                for i in range(len(self.texts))
            ]
            obj = "text_completion"
        return {
            "id": self.id, "object": obj, "created": self.created, "model": self.model,
            "system_fingerprint": None, "choices": choices, "usage": self.usage,
        }  # fmt: skip

    # --- server-sent events -----------------------------------------------------------------------

    def _chunk(self, choices: list[dict]) -> dict:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def sse_start(self) -> list[bytes]:
        """Chat streams open with the assistant role for every choice, as OpenAI's do."""
        if not self.chat:
            return []
        choices = [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            for i in range(len(self.texts))
        ]
        return [sse(self._chunk(choices))]

    def sse_frames(self, event: dict) -> list[bytes]:
        """The frames an event becomes; the stream's end after ``done``."""
        if event["type"] == "delta":
            frames = []
            for choice in event["choices"]:
                i = choice["index"]
                offset = len(self.texts[i])
                self.texts[i] += choice["text"]
                tokens = choice.get("tokens")
                if self.chat:
                    if choice["text"] or tokens:
                        frames.append(sse(self._chunk([{
                            "index": i, "delta": {"content": choice["text"]},
                            "logprobs": self._chat_logprobs(tokens) if tokens is not None else None,
                            "finish_reason": None,
                        }])))  # fmt: skip
                    if choice["finish_reason"]:
                        frames.append(sse(self._chunk([
                            {"index": i, "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}
                        ])))  # fmt: skip
                else:
                    frames.append(sse(self._chunk([{
                        "index": i, "text": choice["text"],
                        "logprobs": self._completion_logprobs(tokens, offset) if tokens is not None else None,
                        "finish_reason": choice["finish_reason"],
                    }])))  # fmt: skip
            return frames
        if event["type"] == "done":
            frames = []
            if self.include_usage:
                chunk = self._chunk([])
                chunk["usage"] = event["usage"]
                frames.append(sse(chunk))
            return [*frames, b"data: [DONE]\n\n"]
        return [sse({"error": error_body(event)})]

    # --- logprobs ---------------------------------------------------------------------------------

    def _completion_logprobs(self, tokens: list[dict], offset: int) -> dict | None:
        if self.logprobs is None:
            return None
        offsets = []
        for token in tokens:
            # The worker says where each token starts in the choice's text; else count its text.
            offsets.append(token["offset"] if "offset" in token else offset)
            offset += len(token["token"])
        return {
            "tokens": [token["token"] for token in tokens],
            "token_logprobs": [_number(token.get("logprob")) for token in tokens],
            "top_logprobs": [
                # None for the first prompt token of an echo: nothing precedes it.
                {text: _number(value) for text, value in token["top"].items()}
                if self.logprobs and token.get("top") is not None else None
                for token in tokens
            ],
            "text_offset": offsets,
        }

    def _chat_logprobs(self, tokens: list[dict]) -> dict | None:
        if self.logprobs is None:
            return None
        return {
            "content": [
                {
                    "token": token["token"],
                    "logprob": _number(token.get("logprob")),
                    "bytes": list(token["token"].encode()),
                    "top_logprobs": [
                        {"token": text, "logprob": _number(value), "bytes": list(text.encode())}
                        for text, value in (token.get("top") or {}).items()
                    ],
                }
                for token in tokens
            ],
            "refusal": None,
        }


def error_body(event: dict) -> dict:
    return {"message": event["message"], "type": _error_type(event["status"]), "param": None, "code": event["code"]}


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
