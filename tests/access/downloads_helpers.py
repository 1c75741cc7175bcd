"""Helpers shared by the download gateway tests: an active grant with a bundle of links."""

from __future__ import annotations

import hashlib

from access.catalog.selectors import license_current
from access.distribution.bundles import bundle_create
from access.grants.models import Grant
from access.grants.services import grant_accept_license, grant_create


def active_grant_make(*, user, variant, reviewer, **kwargs) -> Grant:
    grant = grant_create(user=user, variant=variant, actor=reviewer, reason="Collaborator on the project.", **kwargs)
    return grant_accept_license(grant=grant, user=user, license_version=license_current(variant.family))


def bundle_make(*, user, variant, reviewer, **kwargs):
    grant = active_grant_make(user=user, variant=variant, reviewer=reviewer, **kwargs)
    return bundle_create(grant=grant, user=user)


def body_of(response) -> bytes:
    """All the bytes a client receives, streamed or not. The test client closes a streamed
    response once its content is consumed, as a server does."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
