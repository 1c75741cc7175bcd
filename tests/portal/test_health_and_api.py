"""/healthz, and the conventions every API endpoint shares (docs/api.md): errors, schema, docs, CSP, CSRF."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from access.distribution.storage import weight_storage
from portal.celery import app as celery_app

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


@contextlib.contextmanager
def _celery_broker(url: str):
    # The Celery app read its broker URL at start-up, and Celery prefers the
    # CELERY_BROKER_URL environment variable (set in CI) over its config: change both.
    previous = celery_app.conf.broker_url
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELERY_BROKER_URL", url)
        celery_app.conf.broker_url = url
        try:
            yield
        finally:
            celery_app.conf.broker_url = previous


@pytest.fixture
def fresh_weight_storage():
    # weight_storage() is built once per process from settings; rebuild it around settings changes.
    weight_storage.cache_clear()
    yield
    weight_storage.cache_clear()


def _csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def _assert_error_body(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", body["error"]["code"])
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_reports_database_broker_and_storage_ok(client, db, fresh_weight_storage):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}
    assert all(check["ok"] for check in body["checks"].values()), body


def test_healthz_answers_head_requests(client, db, fresh_weight_storage):
    assert client.head("/healthz").status_code == 200


def test_healthz_is_unavailable_when_weight_storage_is_not_writable(
    client, db, tmp_path, fresh_weight_storage, caplog
):
    not_a_folder = tmp_path / "a-regular-file"
    not_a_folder.write_text("in the way")

    with override_settings(PORTAL_STORAGE_BACKEND="local", PORTAL_STORAGE_ROOT=str(not_a_folder / "storage")):
        weight_storage.cache_clear()
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    # The public page names the failing part; the operator's log says why, with the path.
    assert body["checks"]["storage"]["error"] == "storage unavailable; see the portal's log"
    assert str(not_a_folder) not in response.content.decode()
    assert any("not writable" in record.getMessage() for record in caplog.records)


def test_healthz_is_unavailable_when_the_broker_cannot_be_reached(client, db, fresh_weight_storage):
    with _celery_broker(UNREACHABLE_BROKER):
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["storage"]["ok"] is True


def test_healthz_is_unavailable_when_the_filesystem_broker_folder_is_missing(client, db, tmp_path, settings, caplog):
    missing = str(tmp_path / "gone")
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": missing, "data_folder_out": missing}

    with _celery_broker("filesystem://"):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert any("is missing" in record.getMessage() for record in caplog.records)


def test_healthz_rejects_post(client, db):
    response = client.post("/healthz")

    assert response.status_code == 405


# --- API errors -----------------------------------------------------------------------------


def test_unknown_api_path_is_a_json_404(api_client, db):
    _assert_error_body(api_client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_unknown_api_path_is_a_json_404_for_post_too(api_client, db):
    _assert_error_body(api_client.post("/api/v1/no-such-thing", {}, format="json"), 404, "not_found")


def test_writing_to_the_read_only_catalog_is_a_json_405(api_client, db):
    error = _assert_error_body(api_client.post("/api/v1/models", {}, format="json"), 405, "method_not_allowed")

    assert "POST" in error["message"]


def test_an_unknown_bearer_token_is_a_json_401_that_names_the_scheme(api_client, db):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer mwp_not-a-real-token")

    response = api_client.get("/api/v1/models")

    error = _assert_error_body(response, 401, "authentication_failed")
    assert "account page" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_malformed_authorization_header_is_a_json_401(api_client, db):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer two parts")

    _assert_error_body(api_client.get("/api/v1/models"), 401, "authentication_failed")


def test_a_valid_bearer_token_needs_no_csrf_token(researcher, bearer_client):
    # Scripts with a token are not browsers: CSRF does not apply, the method check does.
    _assert_error_body(bearer_client(researcher).post("/api/v1/models", {}, format="json"), 405)


def test_a_browser_session_cannot_write_to_the_api_without_a_csrf_token(researcher):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(researcher)

    response = browser.post("/api/v1/models", "{}", content_type="application/json")

    error = _assert_error_body(response, 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_a_browser_session_with_its_csrf_token_gets_past_the_csrf_check(researcher, llama_catalog):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(researcher)
    browser.get("/")  # renders a form, which sets the CSRF cookie
    token = browser.cookies["csrftoken"].value

    response = browser.post("/api/v1/models", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)

    _assert_error_body(response, 405, "method_not_allowed")


# --- Schema and docs -------------------------------------------------------------------------


def test_openapi_schema_describes_the_catalog_endpoints(api_client, db):
    response = api_client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/models", "/api/v1/models/{slug}", "/api/v1/licenses/{license_id}"} <= set(schema["paths"])
    assert "get" in schema["paths"]["/api/v1/models"]
    assert "personalApiToken" in schema["components"]["securitySchemes"]


def test_openapi_schema_is_served_as_yaml_by_default(api_client, db):
    response = api_client.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert "/api/v1/models:" in response.content.decode()


def test_openapi_schema_generates_valid_and_without_warnings(tmp_path, db):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))

    assert "/api/v1/models" in (tmp_path / "schema.yaml").read_text()


def test_api_docs_page_loads_scripts_only_from_the_portal(client, db):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert _csp(response)["script-src"] == ["'self'"]
    page = response.content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts
    for attributes, inline_code in scripts:
        assert inline_code.strip() == "", "inline scripts would be blocked by the CSP"
        source = re.search(r'src="([^"]+)"', attributes).group(1)
        assert source.startswith("/") and not source.startswith("//"), source


def test_api_docs_start_up_script_is_served_as_a_file(client, db):
    page = client.get("/api/docs/").content.decode()
    start_up = re.search(r'<script src="(/api/docs/\?script=[^"]*)"', page).group(1)

    response = client.get(start_up.replace("&amp;", "&"))

    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    assert "SwaggerUIBundle" in response.content.decode()


# --- Content-Security-Policy on every page ----------------------------------------------------


def _html_pages(llama_catalog) -> list[str]:
    license_id = llama_catalog.licenses.get().pk
    return [
        "/",
        "/models/llama-7b/",
        f"/licenses/{license_id}/",
        "/models/no-such-model/",
        "/accounts/login/",
        "/accounts/signup/",
        "/api/docs/",
    ]


@pytest.mark.parametrize("persona", ["client", "researcher_client", "admin_user_client"])
def test_every_html_response_carries_a_strict_content_security_policy(persona, request, llama_catalog):
    client = request.getfixturevalue(persona)
    urls = _html_pages(llama_catalog)
    if persona != "client":
        urls += ["/account/"]
    if persona == "admin_user_client":
        urls += ["/admin/", "/admin/access/auditevent/", "/admin/access/licenseversion/add/"]

    for url in urls:
        response = client.get(url)
        assert response["Content-Type"].startswith("text/html"), url
        policy = _csp(response)
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        assert policy["object-src"] == ["'none'"], url


def test_error_pages_carry_the_content_security_policy(client, db):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert _csp(response)["script-src"] == ["'self'"]


def test_a_page_number_that_is_not_a_number_is_a_field_error_without_traceback(api_client, db):
    response = api_client.get("/api/v1/models", {"page": "not-a-number"})

    assert response.status_code == 400
    assert "Traceback" not in response.content.decode()
    error = _assert_error_body(response, 400, "invalid")
    assert "page" in error["fields"]


def test_a_page_past_the_end_is_not_found(api_client, llama_catalog):
    _assert_error_body(api_client.get("/api/v1/models", {"page": "99"}), 404)


def test_unknown_api_paths_answer_json_even_with_debug_on(api_client, db, settings):
    settings.DEBUG = True
    _assert_error_body(api_client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_unknown_model_error_says_where_to_look(api_client, llama_catalog):
    error = _assert_error_body(api_client.get("/api/v1/models/llama-1000b"), 404)
    assert "llama-1000b" in error["message"] and "/api/v1/models" in error["message"]


def test_livez_answers_without_touching_dependencies(client, db, settings, django_assert_num_queries):
    # A broken broker makes /healthz fail; liveness must still answer, and without a query.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert response.status_code == 200
    assert response.content == b"ok\n"
