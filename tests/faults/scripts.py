"""What the fault tests do inside the portal, run as ``python -m tests.faults.scripts <name> '<json
kwargs>'`` in a subprocess with the private servers' environment (the test process's own Django
talks to the suite's test database, not to the private PostgreSQL). Each prints one JSON line.

Seeding goes through the services, as the portal's own commands do; reports read the rows the
tests compare with what the clients saw.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

PASSWORD = "fault-tests-password-42"


def seed_downloads(*, weights_folder: str, prefix: str) -> dict:
    """The demo weights published to local storage, a researcher with an active grant, one
    bundle of links, and an API token."""
    from django.core.management import call_command

    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.distribution.bundles import bundle_create, bundle_files
    from access.distribution.publishing import demo_weights_publish
    from access.distribution.tokens import link_path
    from access.grants.services import grant_accept_license, grant_create
    from portal import roles
    from portal.services import api_token_create, user_create

    call_command("seed_catalog", stdout=io.StringIO())
    demo_weights_publish(folder=Path(weights_folder))
    variant = ModelVariant.objects.get(slug="llama-demo-tiny")
    reviewer = user_create(
        email=f"{prefix}.reviewer@uni.example.org", password=PASSWORD, role=roles.REVIEWER, email_verified=True
    )
    researcher = user_create(email=f"{prefix}.researcher@uni.example.org", password=PASSWORD, email_verified=True)
    grant = grant_create(user=researcher, variant=variant, actor=reviewer, reason="Fault tests.")
    grant = grant_accept_license(grant=grant, user=researcher, license_version=license_current(variant.family))
    bundle = bundle_create(grant=grant, user=researcher)
    # The researcher's own checksums: weight shards carry their fingerprint (issue 17).
    checksums = {entry["name"]: entry["sha256"] for entry in bundle_files(bundle)}
    links = [
        {"path": link_path(link), "name": link.file.name, "size": link.file.size, "sha256": checksums[link.file.name]}
        for link in bundle.links.select_related("file").order_by("file__size")
    ]
    _, token = api_token_create(user=researcher, name="fault tests")
    return {"links": links, "token": token, "grant_id": grant.pk}


def seed_applicants(*, count: int, prefix: str) -> dict:
    """``count`` researchers who may apply (each with an API token) and one reviewer, who hears of
    every new request by email."""
    from django.core.management import call_command

    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from portal import roles
    from portal.services import api_token_create, user_create

    call_command("seed_catalog", stdout=io.StringIO())
    user_create(email=f"{prefix}.reviewer@uni.example.org", password=PASSWORD, role=roles.REVIEWER, email_verified=True)
    applicants = []
    for number in range(count):
        user = user_create(email=f"{prefix}.{number}@uni.example.org", password=PASSWORD, email_verified=True)
        applicants.append({"email": user.email, "token": api_token_create(user=user, name="fault tests")[1]})
    license_id = license_current(ModelVariant.objects.get(slug="llama-7b").family).pk
    return {"applicants": applicants, "license_id": license_id}


def download_events(*, grant_id: int) -> dict:
    from access.distribution.models import DownloadEvent

    rows = DownloadEvent.objects.filter(grant_id=grant_id).select_related("file").order_by("id")
    return {
        "events": [
            {
                "user_agent": event.user_agent,
                "counted": event.counted,
                "bytes_sent": event.bytes_sent,
                "outcome": event.outcome,
                "status_code": event.status_code,
                "file": event.file.name if event.file else None,
            }
            for event in rows
        ]
    }


def access_requests(*, prefix: str) -> dict:
    """Each request of the applicants ``prefix.*`` with the actions audited on it."""
    from access.audit.models import AuditEvent
    from access.requests.models import AccessRequest

    found = {}
    for request in AccessRequest.objects.filter(applicant__email__startswith=f"{prefix}.").select_related("applicant"):
        actions = AuditEvent.objects.filter(target_type="access.accessrequest", target_id=str(request.pk))
        found[request.reference] = {
            "applicant": request.applicant.email,
            "audited": sorted(actions.values_list("action", flat=True)),
        }
    return {"requests": found}


def submit_requests(*, prefix: str) -> dict:
    """Every applicant ``prefix.*`` applies for llama-7b through the service, as the API does: the
    "request received" task goes to the broker once each submission commits."""
    from access.catalog.models import ModelVariant
    from access.catalog.selectors import license_current
    from access.requests.application import ApplicationData
    from access.requests.services import access_request_submit
    from portal.models import User
    from tests.access.conftest import APPLICATION_FIELDS

    variant = ModelVariant.objects.get(slug="llama-7b")
    references = []
    for applicant in User.objects.filter(email__startswith=f"{prefix}.").exclude(email__contains="reviewer"):
        submitted = access_request_submit(
            applicant=applicant,
            variants=[variant],
            data=ApplicationData(**APPLICATION_FIELDS),
            license_version=license_current(variant.family),
        )
        references.append(submitted.reference)
    return {"references": references}


if __name__ == "__main__":
    import django

    django.setup()
    name, arguments = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    print("RESULT " + json.dumps(globals()[name](**arguments)))
