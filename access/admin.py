"""The admin pages, as Django's admin looks for them: each domain registers its own."""

from access.audit import admin as audit_admin
from access.catalog import admin as catalog_admin
from access.grants import admin as grants_admin
from access.requests import admin as requests_admin
from access.review import admin as review_admin
from access.webhooks import admin as webhooks_admin

__all__ = ["audit_admin", "catalog_admin", "grants_admin", "requests_admin", "review_admin", "webhooks_admin"]
