"""The whole workflow through the API alone (docs/api.md), across the domains: apply, the
reviewer's question, edit and resubmit, approval, the license; the audit events each state
change leaves; and the OpenAPI schema of every workflow endpoint. Each domain's own API tests are
in tests/access/<domain>/test_api.py."""

from __future__ import annotations

import json

from django.core.management import call_command

from access.grants.models import Grant, GrantStatus, LicenseAcceptance
from tests.factories import UserFactory

QUEUE = "/api/v1/review/requests"
GRANTS = "/api/v1/review/grants"


def test_the_whole_loop_runs_through_the_api_alone(
    researcher_api, reviewer_api, researcher, llama_catalog, api_apply, decide, use_case_text, current_license_id
):
    applied = api_apply(researcher_api)
    request_id = applied["id"]
    assert applied["status"] == "submitted"

    response = decide(reviewer_api, request_id, "request_info", reason="Which cluster will hold the weights?")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "info_requested"

    detail = researcher_api.get(f"/api/v1/access-requests/{request_id}").json()
    assert detail["status"] == "info_requested"
    assert detail["messages"][-1]["kind"] == "info_request"
    assert detail["messages"][-1]["text"] == "Which cluster will hold the weights?"

    edited_use_case = use_case_text + " The weights stay on the university's air-gapped cluster 'Babbage'."
    response = researcher_api.patch(
        f"/api/v1/access-requests/{request_id}", {"use_case": edited_use_case}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["use_case"] == edited_use_case

    response = researcher_api.post(
        f"/api/v1/access-requests/{request_id}/resubmit", {"message": "Added the cluster."}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "submitted"

    response = decide(reviewer_api, request_id, "approve")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "approved"

    grants = researcher_api.get("/api/v1/grants").json()["results"]
    assert [(g["variant"], g["status"]) for g in grants] == [("llama-7b", "license_required")]
    assert grants[0]["license_id_required"] == current_license_id()

    response = researcher_api.post(
        f"/api/v1/grants/{grants[0]['id']}/accept-license",
        {"license_id": grants[0]["license_id_required"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "active"
    assert response.json()["license_id_required"] is None

    assert Grant.objects.get(user=researcher).status == GrantStatus.ACTIVE
    history = [
        entry["action"] for entry in researcher_api.get(f"/api/v1/access-requests/{request_id}").json()["history"]
    ]
    assert history == [
        "access_request.submitted",
        "access_request.info_requested",
        "access_request.edited",
        "access_request.resubmitted",
        "access_request.approved",
    ]


def test_every_state_change_through_the_api_leaves_exactly_its_audit_events(
    researcher_api,
    reviewer_api,
    second_reviewer_api,
    researcher,
    llama_catalog,
    audit_mark,
    audit_actions_since,
    api_application,
    current_license_id,
    bearer_client,
    api_apply,
):
    def step(expected: list[str], method, url: str, body: dict | None = None) -> dict:
        mark = audit_mark()
        response = method(url, body, format="json")
        assert response.status_code in (200, 201), response.content[:500]
        assert audit_actions_since(mark) == sorted(expected), f"{url}: {audit_actions_since(mark)}"
        return response.json()

    application = {**api_application, "variants": ["llama-7b"], "license_id": current_license_id()}
    flagged_api = bearer_client(UserFactory(email="flagged@gmail.com"))
    step(
        ["access_request.submitted"],  # its flags are part of that one event
        flagged_api.post,
        "/api/v1/access-requests",
        {**application, "full_name": "Flo Flagged"},
    )
    small = step(["access_request.submitted"], researcher_api.post, "/api/v1/access-requests", application)
    big = step(
        ["access_request.submitted"],
        researcher_api.post,
        "/api/v1/access-requests",
        {**application, "variants": ["llama-65b"]},
    )
    small_url, big_url = f"{QUEUE}/{small['id']}", f"{QUEUE}/{big['id']}"

    step(["access_request.assigned"], reviewer_api.post, f"{small_url}/claim")
    step(["access_request.note_added"], reviewer_api.post, f"{small_url}/notes", {"text": "Fine."})
    step(
        ["access_request.info_requested"],
        reviewer_api.post,
        f"{small_url}/decision",
        {"decision": "request_info", "reason": "Cluster?"},
    )
    step(
        ["access_request.edited"],
        researcher_api.patch,
        f"/api/v1/access-requests/{small['id']}",
        {"position": "Lecturer"},
    )
    step(["access_request.resubmitted"], researcher_api.post, f"/api/v1/access-requests/{small['id']}/resubmit")
    approve = {"decision": "approve"}
    step(["access_request.approved", "grant.created"], reviewer_api.post, f"{small_url}/decision", approve)
    step(["access_request.approval_recorded"], reviewer_api.post, f"{big_url}/decision", approve)
    step(["access_request.approved", "grant.created"], second_reviewer_api.post, f"{big_url}/decision", approve)

    first, second = sorted(Grant.objects.filter(user=researcher).values_list("pk", flat=True))
    step(
        ["license.accepted", "grant.activated", "grant.activated"],  # both grants of the family wait for it
        researcher_api.post,
        f"/api/v1/grants/{first}/accept-license",
        {"license_id": current_license_id()},
    )
    step(["grant.suspended"], reviewer_api.post, f"{GRANTS}/{first}/suspend", {"reason": "Check."})
    step(["grant.reinstated"], reviewer_api.post, f"{GRANTS}/{first}/reinstate")
    step(["grant.revoked"], reviewer_api.post, f"{GRANTS}/{second}/revoke", {"reason": "Shared."})
    other = UserFactory()
    step(["grant.created"], reviewer_api.post, GRANTS, {"email": other.email, "variant": "llama-7b", "reason": "Co."})

    other_api = bearer_client(other)
    rejected = api_apply(other_api, ["llama-13b"])
    reject = {"decision": "reject", "reason": "Out of scope."}
    step(["access_request.rejected"], reviewer_api.post, f"{QUEUE}/{rejected['id']}/decision", reject)
    withdrawn = api_apply(other_api, ["llama-33b"])
    step(["access_request.withdrawn"], other_api.post, f"/api/v1/access-requests/{withdrawn['id']}/withdraw")
    assert LicenseAcceptance.objects.count() == 1


def test_openapi_schema_documents_every_workflow_endpoint_without_warnings(tmp_path, db):
    path = tmp_path / "schema.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(path))

    schema = json.loads(path.read_text())
    paths = schema["paths"]
    expected = {
        "/api/v1/access-requests": {"get", "post"},
        "/api/v1/access-requests/{id}": {"get", "patch"},
        "/api/v1/access-requests/{id}/resubmit": {"post"},
        "/api/v1/access-requests/{id}/withdraw": {"post"},
        "/api/v1/grants": {"get"},
        "/api/v1/grants/{id}/accept-license": {"post"},
        "/api/v1/review/requests": {"get"},
        "/api/v1/review/requests/{id}": {"get"},
        "/api/v1/review/requests/{id}/claim": {"post"},
        "/api/v1/review/requests/{id}/notes": {"post"},
        "/api/v1/review/requests/{id}/decision": {"post"},
        "/api/v1/review/grants": {"get", "post"},
        "/api/v1/review/grants/{id}/revoke": {"post"},
        "/api/v1/review/grants/{id}/suspend": {"post"},
        "/api/v1/review/grants/{id}/reinstate": {"post"},
    }
    for url, methods in expected.items():
        assert methods <= set(paths[url]), url
    create = paths["/api/v1/access-requests"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("AccessRequestCreateRequest")
    assert "201" in create["responses"]
    decision = paths["/api/v1/review/requests/{id}/decision"]["post"]["responses"]
    assert {"200", "400", "403", "404", "409"} <= set(decision)
    assert decision["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    queue_params = {p["name"] for p in paths["/api/v1/review/requests"]["get"]["parameters"]}
    assert {"status", "variant", "country", "flag", "assignee", "page"} <= queue_params
    listed = schema["components"]["schemas"]["PaginatedReviewRequestListList"]["properties"]
    assert {"count", "next", "previous", "results"} <= set(listed)
