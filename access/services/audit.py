"""Writing the audit log. Every service that changes state calls
``audit_event_record`` inside its own transaction, so the change and its record
commit or roll back together."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.http import HttpRequest

from access.models import AuditEvent

SYSTEM_ACTOR_LABEL = "system"


def request_client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    from allauth.account.adapter import get_adapter

    try:
        return get_adapter(request).get_client_ip(request)
    except Exception:  # a malformed proxy header must never lose the audit row
        return request.META.get("REMOTE_ADDR")


def audit_event_record(
    *,
    action: str,
    actor=None,
    target: models.Model | None = None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    if not transaction.get_connection().in_atomic_block:
        # A record written outside the change's transaction could survive a
        # rolled-back change, or be lost while the change stays.
        raise RuntimeError(f"audit_event_record({action!r}) must run inside the transaction of its change")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = AuditEvent(
        action=action,
        actor=actor,
        actor_label=actor.email if actor is not None else SYSTEM_ACTOR_LABEL,
        details=details or {},
    )
    if target is not None:
        event.target_type = target._meta.label_lower
        event.target_id = str(target.pk)
        event.target_label = str(target)[:254]
    if request is not None:
        event.ip_address = request_client_ip(request)
        event.user_agent = request.META.get("HTTP_USER_AGENT", "")[:512]
    event.full_clean()
    event.save()
    return event
