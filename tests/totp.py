"""Authenticator-app codes for tests, computed the way a person's phone does."""

from __future__ import annotations

import time

import pyotp


def totp_code_fresh(secret: str, min_seconds_left: float = 3.0) -> str:
    """A code for the current 30 s window, with time left to submit it.

    allauth accepts only the current window (MFA_TOTP_TOLERANCE = 0), so a code
    computed in the last moments of a window may be stale by the time the server
    checks it (a busy CI machine once took long enough); wait for the next window then.
    """
    totp = pyotp.TOTP(secret)
    left = totp.interval - (time.time() % totp.interval)
    if left < min_seconds_left:
        time.sleep(left + 0.1)
    return totp.now()
