"""Outsiders against the workflow API: another researcher, with a token or a
browser session, walks every request, grant and review endpoint of someone
else's objects with every method. Each answer is 403, 404 or 405, the same as
for an object that does not exist (so it tells nothing), and nothing changes."""

from __future__ import annotations

import json

import pytest
from django.forms.models import model_to_dict

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.grants.models import Grant, LicenseAcceptance
from access.grants.services import grant_create
from access.requests.models import AccessRequest, RequestedVariant, RequestMessage, ScreeningFlag
from access.review.models import ReviewDecision, ReviewNote

MISSING_ID = 999_999
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Every object URL of the workflow API, with the methods it answers (others are 405).
REQUEST_URLS = {
    "/api/v1/access-requests/{id}": {"GET", "PATCH"},
    "/api/v1/access-requests/{id}/resubmit": {"POST"},
    "/api/v1/access-requests/{id}/withdraw": {"POST"},
    "/api/v1/review/requests/{id}": {"GET"},
    "/api/v1/review/requests/{id}/claim": {"POST"},
    "/api/v1/review/requests/{id}/notes": {"POST"},
    "/api/v1/review/requests/{id}/decision": {"POST"},
}
GRANT_URLS = {
    "/api/v1/grants/{id}/accept-license": {"POST"},
    "/api/v1/review/grants/{id}/revoke": {"POST"},
    "/api/v1/review/grants/{id}/suspend": {"POST"},
    "/api/v1/review/grants/{id}/reinstate": {"POST"},
}
REVIEW_COLLECTIONS = ["/api/v1/review/requests", "/api/v1/review/grants"]
WATCHED_MODELS = [
    AccessRequest,
    RequestedVariant,
    ScreeningFlag,
    ReviewNote,
    RequestMessage,
    ReviewDecision,
    Grant,
    LicenseAcceptance,
    AuditEvent,
]


def _body(researcher, outsider, license_id: int) -> dict:
    """One body that every endpoint would accept from someone entitled to call it."""
    return {
        "position": "Intruder",
        "message": "Let me in.",
        "license_id": license_id,
        "assignee": outsider.email,
        "text": "Planted note.",
        "decision": "approve",
        "reason": "Because.",
        "email": researcher.email,
        "variant": "llama-13b",
        "block_new_requests": True,
    }


def _snapshot() -> dict:
    return {model.__name__: [model_to_dict(row) for row in model.objects.order_by("pk")] for model in WATCHED_MODELS}


def _call(client, method: str, url: str, body: dict):
    return client.generic(method, url, json.dumps(body), content_type="application/json")


@pytest.fixture
def victims(researcher, reviewer, llama_catalog, bearer_client, api_apply, decide) -> dict:
    """The researcher's objects in the states where each action would work for them:
    a request waiting for more information (edit, resubmit, withdraw), one in the
    queue (claim, notes, decide) and a grant waiting for its license (accept, suspend)."""
    researcher_api = bearer_client(researcher)
    asked = api_apply(researcher_api, ["llama-7b"])
    decide(bearer_client(reviewer), asked["id"], "request_info", reason="Which cluster?")
    queued = api_apply(researcher_api, ["llama-33b"])
    grant = grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-65b"), actor=reviewer, reason="Co-author."
    )
    return {"requests": [asked["id"], queued["id"]], "grants": [grant.pk]}


@pytest.fixture(params=["token", "session"])
def outsider_client(request, outsider, client, bearer_client, login_with_password):
    if request.param == "token":
        return bearer_client(outsider)
    login_with_password(client, outsider)
    return client


def test_an_outsider_gets_403_or_404_on_every_object_endpoint_and_nothing_changes(
    outsider_client, researcher, outsider, victims, current_license_id
):
    body = _body(researcher, outsider, current_license_id())
    targets = [(url, victims["requests"], allowed) for url, allowed in REQUEST_URLS.items()]
    targets += [(url, victims["grants"], allowed) for url, allowed in GRANT_URLS.items()]
    before = _snapshot()
    walked = 0

    for template, ids, allowed in targets:
        for object_id in ids:
            for method in METHODS:
                url = template.format(id=object_id)
                response = _call(outsider_client, method, url, body)
                missing = _call(outsider_client, method, template.format(id=MISSING_ID), body)

                expected = (403, 404) if method in allowed else (403, 405)
                assert response.status_code in expected, (method, url, response.content[:300])
                assert set(response.json()) == {"error"}
                assert (response.status_code, response.json()) == (missing.status_code, missing.json()), (
                    f"{method} {url} tells someone else's object from a missing one"
                )
                walked += 1

    assert walked == (len(REQUEST_URLS) * 2 + len(GRANT_URLS)) * len(METHODS)
    assert _snapshot() == before


def test_an_outsider_gets_403_on_every_review_list_and_nothing_changes(
    outsider_client, researcher, outsider, victims, current_license_id
):
    body = _body(researcher, outsider, current_license_id())
    before = _snapshot()

    for url in REVIEW_COLLECTIONS:
        for method in METHODS:
            response = _call(outsider_client, method, url, body)
            assert response.status_code == 403, (method, url, response.content[:300])
            assert response.json()["error"]["code"] == "permission_denied"

    assert _snapshot() == before


def test_an_outsiders_own_lists_show_none_of_someone_elses_objects(outsider_client, researcher, victims):
    requests = outsider_client.get("/api/v1/access-requests")
    grants = outsider_client.get("/api/v1/grants")

    assert requests.status_code == grants.status_code == 200
    assert requests.json()["count"] == 0
    assert grants.json()["count"] == 0
    content = requests.content.decode() + grants.content.decode()
    assert researcher.email not in content
    for access_request in AccessRequest.objects.all():
        assert access_request.reference not in content


def test_anonymous_callers_get_401_everywhere_and_nothing_changes(
    api_client, researcher, outsider, victims, current_license_id
):
    body = _body(researcher, outsider, current_license_id())
    urls = [t.format(id=i) for t in REQUEST_URLS for i in victims["requests"]]
    urls += [t.format(id=i) for t in GRANT_URLS for i in victims["grants"]]
    urls += [*REVIEW_COLLECTIONS, "/api/v1/access-requests", "/api/v1/grants"]
    before = _snapshot()

    for url in urls:
        for method in METHODS:
            response = _call(api_client, method, url, body)
            assert response.status_code == 401, (method, url, response.content[:300])
            assert response["WWW-Authenticate"].startswith("Bearer")

    assert _snapshot() == before


def test_the_owner_could_have_done_what_the_outsider_was_refused(
    researcher, victims, bearer_client, current_license_id
):
    # The walk above means something only if these objects accept the same calls from their owner.
    asked, queued = victims["requests"]
    owner = bearer_client(researcher)

    edited = owner.patch(f"/api/v1/access-requests/{asked}", {"position": "Lecturer"}, format="json")
    withdrawn = owner.post(f"/api/v1/access-requests/{queued}/withdraw")
    accepted = owner.post(
        f"/api/v1/grants/{victims['grants'][0]}/accept-license", {"license_id": current_license_id()}, format="json"
    )

    assert (edited.status_code, withdrawn.status_code, accepted.status_code) == (200, 200, 200)
