"""The sandbox's OpenAI-compatible routes, mounted at /v1/ and at /sandbox/<slug>/v1/ (portal/urls.py)."""

from django.urls import path, re_path

from inference.sandbox import openai_api

urlpatterns = [
    path("models", openai_api.models_list, name="sandbox-models"),
    path("models/<str:model>", openai_api.model_retrieve, name="sandbox-model"),
    path("completions", openai_api.completions, name="sandbox-completions"),
    path("chat/completions", openai_api.chat_completions, name="sandbox-chat-completions"),
    # Anything else under the base URL answers in OpenAI's error shape, not the portal API's.
    re_path(r"^", openai_api.endpoint_not_found),
]
