"""The sandbox: approved researchers run a granted model through an OpenAI-compatible API
(``/v1/``, and ``/sandbox/<slug>/v1/`` for one model). Who may use which variant is decided by
the same grant rules as the download gateway (``selectors``); the API answers in OpenAI's
shapes, errors included, so the official ``openai`` client works unchanged (``openai_api``).
"""
