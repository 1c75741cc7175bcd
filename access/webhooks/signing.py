"""Signing messages as Standard Webhooks does (https://www.standardwebhooks.com), so receivers can
check them with its libraries or a few lines of their own (README, "Webhooks"):

- ``webhook-id``: the message id (the same for every retry of a message: deduplicate by it);
- ``webhook-timestamp``: seconds since the epoch when this attempt was sent (refuse old ones);
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256, keyed by the secret's bytes (the
  base64 after ``whsec_``), of ``"<id>.<timestamp>.<body>"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def webhook_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_signature(secret, message_id, timestamp, body),
    }
