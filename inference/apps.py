from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """The LLaMA engine (``inference.llama``, no Django) and the sandbox that serves it (``inference.sandbox``)."""

    name = "inference"
