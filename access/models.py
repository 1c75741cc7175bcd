"""The app's models, as Django looks for them: each is defined in its domain's ``models``.

Code imports models from their domain (``access.grants.models``), never from here.
"""

from access.audit.models import AuditEvent
from access.catalog.models import LicenseVersion, ModelFamily, ModelVariant
from access.distribution.models import DownloadBundle, DownloadEvent, DownloadLink, WeightFile
from access.grants.models import Grant, LicenseAcceptance
from access.requests.models import AccessRequest, RequestedVariant, RequestMessage, ScreeningFlag
from access.review.models import RejectionTemplate, ReviewDecision, ReviewNote
from access.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "AccessRequest",
    "AuditEvent",
    "DownloadBundle",
    "DownloadEvent",
    "DownloadLink",
    "Grant",
    "LicenseAcceptance",
    "LicenseVersion",
    "ModelFamily",
    "ModelVariant",
    "RejectionTemplate",
    "RequestMessage",
    "RequestedVariant",
    "ReviewDecision",
    "ReviewNote",
    "ScreeningFlag",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WeightFile",
]
