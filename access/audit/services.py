"""Writing the audit log. Every service that changes state calls
``audit_event_record`` inside its own transaction, so the change and its record
commit or roll back together."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.http import HttpRequest
from django.http.request import split_domain_port

from access.audit.models import AuditEvent

SYSTEM_ACTOR_LABEL = "system"


def request_client_ip(request: HttpRequest | None) -> str | None:
    """The client's address by allauth's rule, so audit rows, download logs and allauth's login
    rate limits name the same address: the ALLAUTH_TRUSTED_CLIENT_IP_HEADER header if set, else
    the ALLAUTH_TRUSTED_PROXY_COUNT-th X-Forwarded-For entry from the right when proxies are
    trusted, else REMOTE_ADDR; REMOTE_ADDR as well when that address is missing or malformed.

    Written out rather than asking allauth's adapter, whose adapter and settings lookups were 15% of
    a download link request's CPU time; tests/access/audit/test_client_ip.py holds the two to the same
    answers."""
    if request is None:
        return None
    meta = request.META
    header = getattr(settings, "ALLAUTH_TRUSTED_CLIENT_IP_HEADER", None)
    if header:
        candidate = meta.get("HTTP_" + header.upper().replace("-", "_"))
    else:
        candidate = None
        proxies = getattr(settings, "ALLAUTH_TRUSTED_PROXY_COUNT", 0)  # allauth's default
        forwarded = meta.get("HTTP_X_FORWARDED_FOR") if proxies > 0 else None
        if forwarded:
            hops = forwarded.split(",")
            if len(hops) < proxies:  # fewer hops than proxies: the header cannot be trusted
                return meta.get("REMOTE_ADDR")
            candidate = hops[-proxies]
        if not candidate:
            candidate = meta.get("REMOTE_ADDR")
    address = _clean_ip(candidate) if candidate else None
    return address if address is not None else meta.get("REMOTE_ADDR")


def _clean_ip(value: str) -> str | None:
    """The address in ``value`` (an optional port and IPv6 brackets removed), normalized; None if
    it is not one."""
    value = value.strip()
    host, port = split_domain_port(value)
    if port and host:
        value = host[1:-1] if host[0] == "[" and host[-1] == "]" else host
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


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
