"""Errors of the engine that callers handle: each message says what to do."""


class CheckpointError(Exception):
    """A checkpoint (weights, params.json, tokenizer) that cannot be loaded as it is; the message says what to do."""
