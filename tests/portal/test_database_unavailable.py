"""While the database cannot be reached, every kind of request answers 503 with Retry-After, in its
own kind of body, instead of a 500 that blames the request. Here every query of the request fails
as it does when PostgreSQL is down; tests/faults/ restarts a real PostgreSQL under gunicorn."""

from __future__ import annotations

import contextlib

import pytest
from django.db import OperationalError, ProgrammingError, connection
from django.test import Client

from portal.services import api_token_create


@contextlib.contextmanager
def _database_down():
    def refuse(execute, sql, params, many, context):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    with connection.execute_wrapper(refuse):
        yield


@pytest.fixture
def token(researcher) -> str:
    return api_token_create(user=researcher, name="outage")[1]


def _get(path: str, token: str | None = None):
    client = Client(raise_request_exception=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with _database_down():
        return client.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/", "/models/llama-7b/", "/dl/AAAAAAAAAAAAAAAAAAAAAA.x/params.json"])
def test_pages_and_download_links_answer_503_in_plain_text_while_the_database_is_down(db, path):
    response = _get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/plain")
    assert b"Try again in a minute" in response.content


def test_the_api_answers_503_in_its_error_body_while_the_database_is_down(token):
    response = _get("/api/v1/grants", token)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("path", ["/v1/models", "/sandbox/llama-demo-tiny/v1/models"])
def test_the_sandbox_api_answers_503_in_openai_shape_while_the_database_is_down(token, path):
    response = _get(path, token)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "error": {"message": response.json()["error"]["message"], "type": "server_error", "param": None,
                  "code": "service_unavailable"},
    }  # fmt: skip


def test_a_query_that_is_wrong_rather_than_unanswered_still_answers_500(db):
    def wrong(execute, sql, params, many, context):
        raise ProgrammingError('relation "access_grant" does not exist')

    with connection.execute_wrapper(wrong):
        response = Client(raise_request_exception=False).get("/")
    assert response.status_code == 500
