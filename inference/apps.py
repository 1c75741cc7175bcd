from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """The LLaMA engine (``inference.llama``, no Django) and the sandbox that serves it (``inference.sandbox``)."""

    name = "inference"

    def ready(self):
        from access.distribution.services import grant_network_source_register
        from inference.sandbox.services import sandbox_grant_networks

        # The leak rule counts the networks a grant's sandbox use came from with its links'.
        grant_network_source_register(sandbox_grant_networks)
