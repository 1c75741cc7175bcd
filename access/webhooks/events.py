"""Which audit events are webhook events, and the message each becomes.

Every state change the portal makes records an audit event in its own transaction
(``access.audit.services.audit_event_record``); the webhook messages are made from that record,
in the same transaction, so a message exists exactly when its change committed.

The body follows Standard Webhooks' recommended shape:
``{"type": "grant.revoked", "timestamp": "<ISO 8601>", "data": {...}}``, ``data`` holding what
the event is about (the request or grant, with ids a lab system can look up through the API),
who did it (``actor``: an email, or "system") and the event's details (reasons, variants).
"""

from __future__ import annotations

import json

from django.urls import reverse

from access.audit.models import AuditEvent
from access.distribution.models import DownloadBundle
from access.grants.models import Grant
from access.notifications.services import absolute_url
from access.requests.models import AccessRequest
from access.webhooks.models import WebhookEvent

EVENT_OF_ACTION = {
    "access_request.submitted": WebhookEvent.REQUEST_SUBMITTED,
    "access_request.resubmitted": WebhookEvent.REQUEST_SUBMITTED,
    "access_request.approved": WebhookEvent.REQUEST_DECIDED,
    "access_request.rejected": WebhookEvent.REQUEST_DECIDED,
    "access_request.info_requested": WebhookEvent.REQUEST_INFO_REQUESTED,
    "grant.activated": WebhookEvent.GRANT_ACTIVATED,
    "grant.reinstated": WebhookEvent.GRANT_ACTIVATED,
    "grant.suspended": WebhookEvent.GRANT_SUSPENDED,
    "grant.revoked": WebhookEvent.GRANT_REVOKED,
    "grant.expired": WebhookEvent.GRANT_EXPIRED,
    "download.bundle_suspended": WebhookEvent.DOWNLOADS_LEAK_SUSPENDED,
}


def _request_data(access_request: AccessRequest) -> dict:
    return {
        "id": access_request.pk,
        "reference": access_request.reference,
        "status": access_request.status,
        "applicant": access_request.applicant.email,
        "affiliation": access_request.affiliation,
        "variants": sorted(access_request.variants.values_list("slug", flat=True)),
        "url": absolute_url(reverse("review-detail", args=[access_request.pk])),
    }


def _grant_data(grant: Grant) -> dict:
    return {
        "id": grant.pk,
        "user": grant.user.email,
        "variant": grant.variant.slug,
        "status": grant.status,
        "request": grant.request.reference if grant.request_id else None,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
    }


def _subject(event: AuditEvent) -> dict:
    """What the event is about, as of the change."""
    if event.target_type == "access.accessrequest":
        found = AccessRequest.objects.select_related("applicant").filter(pk=event.target_id).first()
        return {"request": _request_data(found)} if found else {}
    if event.target_type == "access.grant":
        found = Grant.objects.select_related("user", "variant", "request").filter(pk=event.target_id).first()
        return {"grant": _grant_data(found)} if found else {}
    if event.target_type == "access.downloadbundle":
        found = DownloadBundle.objects.select_related("grant__user", "grant__variant", "grant__request")
        found = found.filter(pk=event.target_id).first()
        if found is None:
            return {}
        return {
            "bundle": {"id": found.public_id, "suspended_reason": found.suspended_reason},
            "grant": _grant_data(found.grant),
        }
    return {}


def webhook_body(event: AuditEvent, event_type: str) -> str:
    """The message's JSON body, made once: retries send these same bytes."""
    data = {"actor": event.actor_label, **_subject(event), "details": event.details or {}}
    body = {"type": event_type, "timestamp": event.occurred_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str)
