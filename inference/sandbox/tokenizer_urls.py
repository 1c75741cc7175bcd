"""The remote tokenizer of one model, beside its base URL: /sandbox/<slug>/tokenizer_info,
/tokenize and /detokenize (portal/urls.py mounts these at sandbox/<slug>/)."""

from django.urls import path

from inference.sandbox import tokenizer_api

urlpatterns = [
    path("tokenizer_info", tokenizer_api.tokenizer_info, name="sandbox-tokenizer-info"),
    path("tokenize", tokenizer_api.tokenize, name="sandbox-tokenize"),
    path("detokenize", tokenizer_api.detokenize, name="sandbox-detokenize"),
]
