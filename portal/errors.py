"""Errors that services raise for users to read. Bad input is Django's
ValidationError (400); these are the other outcomes a user can hit."""


class StateConflict(Exception):
    """The action does not fit the object's current state (HTTP 409)."""

    def __init__(self, message: str, code: str = "conflict"):
        super().__init__(message)
        self.message = message
        self.code = code


class LimitReached(Exception):
    """A per-user or per-grant rate limit was reached (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, *, retry_after_seconds: int, code: str = "rate_limited"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after_seconds = max(int(retry_after_seconds), 1)
