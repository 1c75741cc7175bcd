from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """Model engine and sandbox. Filled in by the inference engine issue."""

    name = "inference"
