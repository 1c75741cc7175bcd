"""No 500 for any input (issue 14, item 4), outside the download gateway: whatever a client sends to
the API (/api/v1/), the sandbox's /v1/ and the reviewers' forms, the answer is a 4xx that names
what to fix, in the error shape of the surface it was sent to:

- ids that are not ids (``1e400``, ``NaN``, huge, fractions, booleans, text) for ``license_id``;
- grant end dates past the furthest allowed one (``9999-12-31``), in the API and the review forms;
- JSON nested deeper than Python's parser goes (RecursionError);
- a bad id in a state-changing call: a JSON 404 with a bearer token too, not Django's CSRF page;
- a wrong method: the 405 names the methods to use, on the API and on pages;
- reasons longer than REVIEW_TEXT_MAX_CHARS, through the API, the forms and the services;
- download links of a grant that is not active any more: refused, never shown as if usable;
- and a sweep of odd JSON (wrong types, NUL, lone surrogates, huge strings, arrays for objects)
  over every write endpoint of the API: no 5xx, every 4xx in the API's error shape.

Runs on PostgreSQL in CI, which refuses NUL in text: the sweep would find a NUL that reached it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client, RequestFactory
from django.utils import timezone

from access.catalog.models import ModelVariant
from access.distribution.bundles import bundle_create, bundle_suspend
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_create, grant_expire, grant_reinstate, grant_revoke, grant_suspend
from access.review.services import access_request_request_info

# The access suite's helpers (tests/access/conftest.py, where each is also a fixture of that folder).
from tests.access.conftest import _application_body as application_body
from tests.access.conftest import _current_license_id as current_license_id
from tests.access.conftest import _submit as submit

ACCESS_REQUESTS = "/api/v1/access-requests"
REVIEW_GRANTS = "/api/v1/review/grants"


def _post_json(api, path: str, body: str, method: str = "POST"):
    """Sends ``body`` as written: JSON the test client's encoder would refuse (NaN, 1e400) included."""
    return api.generic(method, path, body, content_type="application/json")


def _with(body: dict, field: str, token: str) -> str:
    """``body`` as JSON with ``field`` set to ``token``, a JSON token as written (``1e400``, ``NaN``)."""
    return json.dumps({**body, field: "@@"}).replace('"@@"', token)


def _error_of(response, status: int) -> dict:
    """docs/api.md's error body with this status; returns its ``error``."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def _field_error(response, field: str) -> list[str]:
    """The messages the API's 400 gives for ``field`` (docs/api.md's error body)."""
    assert response.status_code == 400, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "invalid", error
    assert field in error.get("fields", {}), error
    return error["fields"][field]


@pytest.fixture
def waiting_grant(researcher, reviewer, llama_catalog) -> Grant:
    """The researcher's grant of llama-7b, waiting for the license to be accepted."""
    return grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Co-author."
    )


# --- 1. Ids that are not ids ------------------------------------------------------------------------

# As a JSON token in the body, with what each would do without a check of its own: 1e400 and its
# kind overflow to inf (OverflowError in the lookup), NaN and Infinity are not JSON at all, and a
# fraction of the real id would be truncated to it.
NOT_IDS = ["1e400", "1e309", "-1e400", "NaN", "Infinity", "-Infinity", str(10**40), str(-(10**40)), "true",
           "false", '"abc"', '"1e400"', "[]", "{}", "0", "-1"]  # fmt: skip


def _not_ids(license_id: int) -> list[str]:
    return [*NOT_IDS, f"{license_id}.5", f'"{license_id}.5"']


def test_a_license_id_that_is_no_id_is_a_400_naming_it_when_applying(researcher_api, llama_catalog):
    for value in _not_ids(current_license_id()):
        response = _post_json(researcher_api, ACCESS_REQUESTS, _with(application_body(), "license_id", value))

        assert _field_error(response, "license_id"), value
    assert researcher_api.get(ACCESS_REQUESTS).json()["count"] == 0


def test_a_license_id_that_is_no_id_is_a_400_naming_it_when_accepting(researcher_api, waiting_grant):
    accept = f"/api/v1/grants/{waiting_grant.pk}/accept-license"
    for value in _not_ids(current_license_id()):
        response = _post_json(researcher_api, accept, _with({}, "license_id", value))

        assert _field_error(response, "license_id"), value
    waiting_grant.refresh_from_db()
    assert waiting_grant.status == GrantStatus.LICENSE_REQUIRED


# --- 2. Grant end dates ---------------------------------------------------------------------------


def _too_late_dates() -> list[str]:
    latest = timezone.localdate() + dt.timedelta(days=settings.GRANT_MAX_DURATION_DAYS)
    after = latest + dt.timedelta(days=1)
    return ["9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59+14:00", after.isoformat(), f"{after}T00:00:01Z"]


def test_grant_end_dates_past_the_furthest_allowed_are_a_400_saying_the_limit(reviewer_api, outsider, llama_catalog):
    for value in _too_late_dates():
        response = reviewer_api.post(
            REVIEW_GRANTS,
            {"email": outsider.email, "variant": "llama-7b", "reason": "Vetted.", "expires_at": value},
            format="json",
        )

        (message,) = _field_error(response, "expires_at")
        assert f"{settings.GRANT_MAX_DURATION_DAYS:,} days" in message, value
    assert not Grant.objects.exists()

    # The furthest day itself is fine, as a bare date that ends when that day ends (UTC).
    latest = timezone.localdate() + dt.timedelta(days=settings.GRANT_MAX_DURATION_DAYS)
    response = reviewer_api.post(
        REVIEW_GRANTS,
        {"email": outsider.email, "variant": "llama-7b", "reason": "Vetted.", "expires_at": latest.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.content[:500]
    assert response.json()["expires_at"] == f"{latest + dt.timedelta(days=1)}T00:00:00Z"


def test_an_approval_ending_past_the_furthest_allowed_date_is_a_400_and_decides_nothing(
    reviewer_api, researcher, llama_catalog
):
    access_request = submit(researcher)
    for value in _too_late_dates():
        response = reviewer_api.post(
            f"/api/v1/review/requests/{access_request.pk}/decision",
            {"decision": "approve", "expires_at": value},
            format="json",
        )

        assert _field_error(response, "expires_at"), value
    access_request.refresh_from_db()
    assert access_request.status == "submitted"
    assert not access_request.decisions.exists()


def test_the_review_forms_refuse_an_end_date_past_the_furthest_allowed(
    reviewer_client, researcher, outsider, llama_catalog
):
    access_request = submit(researcher)

    decided = reviewer_client.post(
        f"/review/requests/{access_request.pk}/decision/",
        {"decision": "approve", "variants": ["llama-7b"], "expires_on": "9999-12-31"},
    )
    granted = reviewer_client.post(
        "/review/grants/",
        {"email": outsider.email, "variant": "llama-7b", "reason": "Vetted.", "expires_on": "9999-12-31"},
    )

    for response in (decided, granted):
        assert response.status_code == 400
        assert f"{settings.GRANT_MAX_DURATION_DAYS:,} days" in response.content.decode()
    access_request.refresh_from_db()
    assert access_request.status == "submitted"
    assert not Grant.objects.exists()


# --- 3. JSON nested too deeply --------------------------------------------------------------------

DEEP = "[" * 100_000


def test_json_nested_too_deeply_is_a_400_on_the_api(researcher_api, reviewer_api, researcher, llama_catalog):
    access_request = submit(researcher)
    for api, path in [
        (researcher_api, ACCESS_REQUESTS),
        (researcher_api, f"/api/v1/access-requests/{access_request.pk}/resubmit"),
        (reviewer_api, f"/api/v1/review/requests/{access_request.pk}/decision"),
        (reviewer_api, REVIEW_GRANTS),
    ]:
        error = _error_of(_post_json(api, path, DEEP), 400)
        assert error["code"] == "parse_error" and "nested too deeply" in error["message"], path


def test_json_nested_too_deeply_is_a_400_in_openais_shape_on_the_sandbox(researcher_api):
    for path in ["/v1/completions", "/v1/chat/completions"]:
        response = _post_json(researcher_api, path, DEEP)

        assert response.status_code == 400, response.content[:300]
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]


# --- 4. A bad id in a state-changing call -----------------------------------------------------------

BAD_ID_CALLS = [
    "/api/v1/grants/abc/accept-license",
    "/api/v1/review/grants/abc/revoke",
    "/api/v1/review/requests/not-a-number/claim",
    "/api/v1/access-requests/999999/withdraw",
    "/api/v1/access-requests/99999999999999999999999/withdraw",
]


def test_a_bad_id_in_a_state_changing_call_is_a_json_404_with_a_token_or_a_session(
    researcher, reviewer, bearer_client, login_with_password, login_with_totp
):
    token_clients = [bearer_client(researcher), bearer_client(reviewer)]
    session_clients = [Client(), Client()]
    login_with_password(session_clients[0], researcher)
    login_with_totp(session_clients[1], reviewer)
    for api in [*token_clients, *session_clients]:
        # As a real client meets it: Django's CSRF check is on (the test client turns it off).
        api.handler.enforce_csrf_checks = True
    csrf_headers = {}
    for session in session_clients:
        session.get("/account/")
        csrf_headers[session] = {"HTTP_X_CSRFTOKEN": session.cookies["csrftoken"].value}

    for api in [*token_clients, *session_clients]:
        for path in BAD_ID_CALLS:
            response = api.post(path, "{}", content_type="application/json", **csrf_headers.get(api, {}))

            assert _error_of(response, 404)["code"] == "not_found", path


def test_a_failed_csrf_check_under_the_api_answers_in_its_error_shape():
    def csrf_checked(request):
        raise AssertionError("the view must not run")

    api_refusal = CsrfViewMiddleware(csrf_checked).process_view(
        RequestFactory().post("/api/v1/access-requests"), csrf_checked, (), {}
    )
    page_refusal = CsrfViewMiddleware(csrf_checked).process_view(RequestFactory().post("/apply/"), csrf_checked, (), {})

    assert _error_of(api_refusal, 403)["code"] == "csrf_failed"
    assert page_refusal.status_code == 403 and page_refusal["Content-Type"].startswith("text/html")


# --- 5. A wrong method --------------------------------------------------------------------------------


def test_a_405_names_the_methods_to_use_on_the_api_and_on_pages(researcher_api, researcher_client):
    api = researcher_api.delete(ACCESS_REQUESTS)
    error = _error_of(api, 405)
    assert error["code"] == "method_not_allowed"
    assert error["message"] == "Method DELETE is not allowed here; use GET, POST."
    assert set(api["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}

    for method, path, allowed in [("put", "/grants/", "GET"), ("get", "/account/tokens/", "POST")]:
        page = getattr(researcher_client, method)(path)

        assert page.status_code == 405
        assert page["Allow"] == allowed
        assert f"Method {method.upper()} is not allowed here; use {allowed}." in page.content.decode()


# --- 6. Reasons and their limit --------------------------------------------------------------------------


def test_grant_reasons_longer_than_the_limit_are_a_400_naming_the_field(
    reviewer_api, reviewer, outsider, llama_catalog
):
    too_long = "x" * (settings.REVIEW_TEXT_MAX_CHARS + 1)
    grant = grant_create(
        user=outsider, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Vetted elsewhere."
    )
    calls = [
        (REVIEW_GRANTS, {"email": outsider.email, "variant": "llama-13b", "reason": too_long}),
        (f"{REVIEW_GRANTS}/{grant.pk}/suspend", {"reason": too_long}),
        (f"{REVIEW_GRANTS}/{grant.pk}/revoke", {"reason": too_long}),
    ]
    for path, body in calls:
        assert _field_error(reviewer_api.post(path, body, format="json"), "reason"), path

    grant_suspend(grant=grant, actor=reviewer, reason="Checking a report.")
    assert _field_error(
        reviewer_api.post(f"{REVIEW_GRANTS}/{grant.pk}/reinstate", {"reason": too_long}, format="json"), "reason"
    )
    grant.refresh_from_db()
    assert grant.status == GrantStatus.SUSPENDED and grant.status_reason == "Checking a report."
    assert Grant.objects.count() == 1


def test_the_grant_services_refuse_a_reason_longer_than_the_limit(outsider, reviewer, llama_catalog):
    too_long = "x" * (settings.REVIEW_TEXT_MAX_CHARS + 1)
    variant = ModelVariant.objects.get(slug="llama-7b")

    with pytest.raises(ValidationError) as refused:
        grant_create(user=outsider, variant=variant, actor=reviewer, reason=too_long)
    assert "reason" in refused.value.message_dict

    grant = grant_create(user=outsider, variant=variant, actor=reviewer, reason="Vetted.")
    for action in (grant_suspend, grant_revoke):
        with pytest.raises(ValidationError) as refused:
            action(grant=grant, actor=reviewer, reason=too_long)
        assert "reason" in refused.value.message_dict
    grant_suspend(grant=grant, actor=reviewer, reason="Checking.")
    with pytest.raises(ValidationError):
        grant_reinstate(grant=grant, actor=reviewer, reason=too_long)


def test_the_grant_form_refuses_a_reason_longer_than_the_limit(reviewer_client, outsider, llama_catalog):
    response = reviewer_client.post(
        "/review/grants/",
        {"email": outsider.email, "variant": "llama-7b", "reason": "x" * (settings.REVIEW_TEXT_MAX_CHARS + 1)},
    )

    assert response.status_code == 400
    assert f"at most {settings.REVIEW_TEXT_MAX_CHARS} characters" in response.content.decode()
    assert not Grant.objects.exists()


# --- 7. Download links of a grant that is not active ---------------------------------------------------


def _revoke(grant, bundle, reviewer):
    grant_revoke(grant=grant, actor=reviewer, reason="Shared the weights.")


def _suspend(grant, bundle, reviewer):
    grant_suspend(grant=grant, actor=reviewer, reason="Checking a report.")


def _expire(grant, bundle, reviewer):
    grant_expire(grant=grant)


def _suspend_links(grant, bundle, reviewer):
    bundle_suspend(bundle=bundle, reason="Leak rule: links used from 4 networks.")


@pytest.mark.parametrize(
    ("end_access", "status", "code", "says"),
    [
        (_revoke, 403, "grant_not_usable", "revoked"),
        (_suspend, 403, "grant_not_usable", "suspended"),
        (_expire, 410, "grant_not_usable", "has ended"),
        (_suspend_links, 403, "links_suspended", "suspended"),
    ],
)
def test_links_of_a_grant_that_ended_are_refused_not_listed(
    researcher, reviewer, researcher_api, client, login_with_password, published_demo_weights,
    active_grant_make, end_access, status, code, says,
):  # fmt: skip
    variant, _, _ = published_demo_weights
    grant = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    bundle = bundle_create(grant=grant, user=researcher)
    links = f"/api/v1/grants/{grant.pk}/download-links"
    assert researcher_api.get(links).status_code == 200

    end_access(grant, bundle, reviewer)

    error = _error_of(researcher_api.get(links), status)
    assert error["code"] == code and says in error["message"]
    login_with_password(client, researcher)
    page = client.get(f"/grants/{grant.pk}/downloads/")
    assert page.status_code == 200
    assert b"/dl/" not in page.content


# --- 8. Odd JSON on every write endpoint ------------------------------------------------------------------

# JSON tokens, as written: wrong types, NUL (PostgreSQL refuses it in text), lone surrogates (no
# Unicode, so neither storable nor writable as UTF-8), huge text, arrays and objects where
# neither is expected, and both inside lists and keys.
ODD_VALUES = [
    "null", "true", "-1", "1e400", str(10**40), '""', '"\\u0000"', '"llama-7b\\u0000"', '"\\ud800"',
    '"x\\udfff"', json.dumps("x" * 300_000), "[]", "{}", '["\\u0000"]', '["\\ud800"]', '{"\\u0000": 1}',
    '[{"a": [null]}]',
]  # fmt: skip
ODD_BODIES = ["[]", '"x"', "1", "null", "true", '[{"decision": "approve"}]', '{"\\ud800": "x"}', '{"a\\u0000": 1}']


def test_odd_json_on_any_write_endpoint_is_a_4xx_in_the_api_error_shape(
    researcher, reviewer, outsider, researcher_api, reviewer_api, llama_catalog
):
    open_request = submit(researcher)
    asked = submit(researcher, "llama-13b")
    access_request_request_info(access_request=asked, reviewer=reviewer, message="Which cluster?")
    own_grant = grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-33b"), actor=reviewer, reason="Co-author."
    )
    managed = grant_create(
        user=outsider, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Vetted."
    )
    endpoints = [
        (researcher_api, "POST", ACCESS_REQUESTS, application_body(("llama-65b",))),
        (researcher_api, "PATCH", f"{ACCESS_REQUESTS}/{asked.pk}", {"affiliation": "Uni", "country": "GB"}),
        (researcher_api, "POST", f"{ACCESS_REQUESTS}/{asked.pk}/resubmit", {"message": "Our own cluster."}),
        (researcher_api, "POST", f"/api/v1/grants/{own_grant.pk}/accept-license", {"license_id": current_license_id()}),
        (reviewer_api, "POST", f"/api/v1/review/requests/{open_request.pk}/claim", {"assignee": reviewer.email}),
        (reviewer_api, "POST", f"/api/v1/review/requests/{open_request.pk}/notes", {"text": "Checked."}),
        (
            reviewer_api,
            "POST",
            f"/api/v1/review/requests/{open_request.pk}/decision",
            {"decision": "request_info", "reason": "Which GPUs?", "variants": ["llama-7b"], "expires_at": "2031-01-01"},
        ),
        (reviewer_api, "POST", REVIEW_GRANTS, {"email": outsider.email, "variant": "llama-13b", "reason": "Vetted."}),
        (reviewer_api, "POST", f"{REVIEW_GRANTS}/{managed.pk}/suspend", {"reason": "Checking."}),
        (reviewer_api, "POST", f"{REVIEW_GRANTS}/{managed.pk}/revoke", {"reason": "Shared.", "block_new_requests": 1}),
    ]
    for api, method, path, body in endpoints:
        sent = [*ODD_BODIES, *(_with(body, field, token) for field in body for token in ODD_VALUES)]
        for raw in sent:
            response = _post_json(api, path, raw, method)

            assert response.status_code < 500, (path, raw[:80])
            if response.status_code >= 400:
                _error_of(response, response.status_code)
