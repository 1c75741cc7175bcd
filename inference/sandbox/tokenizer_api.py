"""The remote tokenizer beside each model's base URL, in the shapes lm-evaluation-harness's
``RemoteTokenizer`` (and vLLM's tokenizer API) read:

- ``GET  /sandbox/<slug>/tokenizer_info`` -> the special tokens, the vocabulary's size, the
  sandbox's prompt limit and the chat template;
- ``POST /sandbox/<slug>/tokenize`` ``{"prompt", "add_special_tokens"}`` -> ``{"tokens", "count", "max_model_len"}``;
- ``POST /sandbox/<slug>/detokenize`` ``{"tokens"}`` -> ``{"prompt"}``.

So ``lm_eval --model local-completions ... tokenizer_backend=remote`` needs nothing of the model on
the researcher's side. Behind the same token and grant check as the model itself: whoever may not
run the model may not read its tokenizer either. These run no model and count against no quota
(an evaluation tokenizes every item); their inputs are bounded as prompts are.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from inference.sandbox.checkpoints import CheckpointFetchError
from inference.sandbox.openai_api import api_caller, csrf_refusal, model_unavailable, openai_error
from inference.sandbox.openai_params import CHAT_TEMPLATE, ParamError, request_body_parse, text_field
from inference.sandbox.selectors import sandbox_refusal
from inference.sandbox.tokenizers import sandbox_tokenizer


def _tokenizer(request, slug: str, method: str):
    """(tokenizer, variant, None) for a caller who may use the model, else (None, None, response)."""
    user, refusal = api_caller(request)
    if refusal is not None:
        return None, None, refusal
    if request.method != method:
        response = openai_error(405, f"{request.method} is not allowed here; use {method}.", code="method_not_allowed")
        response["Allow"] = method
        return None, None, response
    if method == "POST" and not request.META.get("HTTP_AUTHORIZATION") and csrf_refusal(request) is not None:
        return None, None, openai_error(403, "CSRF check failed: reload the page.", code="csrf_failed")
    variant, denied = sandbox_refusal(user, slug)
    if denied is not None:
        return None, None, openai_error(denied.status, denied.message, code=denied.code)
    try:
        return sandbox_tokenizer(variant), variant, None
    except CheckpointFetchError as exc:
        return None, None, model_unavailable(exc)


def _prompt_limit(variant) -> int:
    return variant.sandbox_max_prompt_tokens or settings.SANDBOX_MAX_PROMPT_TOKENS


def _body(request) -> dict:
    body = request_body_parse(request.body)
    if not isinstance(body, dict):
        raise ParamError("The request body must be a JSON object.", param=None)
    return body


@csrf_exempt
@never_cache
def tokenizer_info(request, slug: str):
    tokenizer, variant, refusal = _tokenizer(request, slug, "GET")
    if refusal is not None:
        return refusal
    names = {token_id: name for name, token_id in tokenizer.special_ids.items()}
    return JsonResponse({
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": names.get(tokenizer.bos_id),
        "eos_token": names.get(tokenizer.eos_id),
        "unk_token": names.get(tokenizer.sp.unk_id()),
        "pad_token": None,  # LLaMA has none; batches are never padded on the way in
        "add_bos_token": True,  # a text prompt to /v1/completions is read with bos first
        "add_eos_token": False,
        "vocab_size": tokenizer.n_words,
        "model_max_length": _prompt_limit(variant),
        "chat_template": CHAT_TEMPLATE,
    })  # fmt: skip


@csrf_exempt
@never_cache
def tokenize(request, slug: str):
    """Text to ids as /v1/completions reads a text prompt: bos first unless add_special_tokens is
    false, and the names of special tokens ("</s>") as those tokens."""
    tokenizer, variant, refusal = _tokenizer(request, slug, "POST")
    if refusal is not None:
        return refusal
    try:
        body = _body(request)
        prompt = text_field(body.get("prompt"), "prompt")  # as a completion's prompt is checked
        add_special_tokens = body.get("add_special_tokens", True)
        if not isinstance(add_special_tokens, bool):
            raise ParamError("'add_special_tokens' must be true or false.", param="add_special_tokens")
    except ParamError as exc:
        return openai_error(400, exc.message, code=exc.code, param=exc.param)
    tokens = tokenizer.encode(prompt, bos=add_special_tokens, special=True)
    return JsonResponse({"tokens": tokens, "count": len(tokens), "max_model_len": _prompt_limit(variant)})


@csrf_exempt
@never_cache
def detokenize(request, slug: str):
    """Ids to text, the special tokens written out ("<s> Hello"), as transformers' decode does."""
    tokenizer, _, refusal = _tokenizer(request, slug, "POST")
    if refusal is not None:
        return refusal
    try:
        tokens = _body(request).get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise ParamError("'tokens' must be a list of token ids.", param="tokens")
        if len(tokens) > settings.SANDBOX_MAX_PROMPT_CHARS:
            raise ParamError(
                f"{len(tokens):,} tokens; at most {settings.SANDBOX_MAX_PROMPT_CHARS:,} at a time.", param="tokens"
            )
        outside = next((t for t in tokens if not 0 <= t < tokenizer.n_words), None)
        if outside is not None:
            raise ParamError(
                f"Token id {outside} is outside this model's vocabulary (0 to {tokenizer.n_words - 1}).",
                param="tokens",
            )
    except ParamError as exc:
        return openai_error(400, exc.message, code=exc.code, param=exc.param)
    return JsonResponse({"prompt": tokenizer.decode_special(tokens)})
