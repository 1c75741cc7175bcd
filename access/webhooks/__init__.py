"""Webhooks (issue 18): lab systems hear of access events (a request submitted or decided, a grant
activated, suspended, revoked or expired, links suspended by the leak rule) without polling.
Admins register endpoints; each event becomes one signed message per subscribed endpoint, queued
in the same transaction as the change it reports and delivered by Celery with retries."""
