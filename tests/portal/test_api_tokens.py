"""Personal API tokens: created and revoked on the account page, shown once,
stored as a hash, accepted as ``Authorization: Bearer`` until they expire or
are revoked.

Personas: a researcher who owns tokens, an outsider who must not touch them.
The clock is the only thing stood in for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from access.audit.models import AuditEvent
from portal.models import ApiToken
from portal.services import api_token_authenticate, api_token_create, api_token_revoke
from tests.factories import UserFactory

URLSAFE_ALPHABET = set(string.ascii_letters + string.digits + "-_")


def _create_on_account_page(client, name: str = "laptop script", expires_on: str = "") -> str:
    response = client.post("/account/tokens/", {"name": name, "expires_on": expires_on})
    assert response.status_code == 200, response.content[:500]
    match = re.search(r'data-testid="token-secret">([^<]+)<', response.content.decode())
    assert match, "the new token is not on the page"
    return match.group(1)


def _bearer(secret: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def _in_days(days: int) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


def _assert_api_error(response, status: int):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    assert error["code"] and error["message"]
    return error


# --- Creating a token ---------------------------------------------------------------


def test_new_token_is_shown_once_on_the_creation_response(researcher_client, researcher):
    secret = _create_on_account_page(researcher_client, name="laptop script")

    token = ApiToken.objects.get(user=researcher)
    assert token.name == "laptop script"
    assert secret.startswith(token.hint)
    account_page = researcher_client.get("/account/").content.decode()
    assert "laptop script" in account_page
    assert token.hint in account_page
    assert secret not in account_page


def test_new_token_is_never_kept_in_the_session(researcher_client):
    secret = _create_on_account_page(researcher_client)

    for session in Session.objects.all():
        assert secret not in str(session.get_decoded())


def test_token_is_stored_only_as_its_sha256(researcher_client, researcher):
    secret = _create_on_account_page(researcher_client)

    token = ApiToken.objects.get(user=researcher)
    assert token.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        stored_row = cursor.fetchone()
    assert not any(secret in str(value) for value in stored_row)
    random_part = secret.removeprefix(settings.API_TOKEN_PREFIX)
    assert not any(random_part[8:] in str(value) for value in stored_row)  # not even most of it


def test_token_secret_stays_out_of_the_audit_log(researcher_client, researcher):
    secret = _create_on_account_page(researcher_client)

    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor == researcher
    assert secret not in str(event.details) + event.target_label + event.user_agent


def test_token_has_the_prefix_and_at_least_160_random_bits(researcher):
    _, secret = api_token_create(user=researcher, name="entropy")

    assert secret.startswith("mwp_")
    random_part = secret.removeprefix("mwp_")
    assert set(random_part) <= URLSAFE_ALPHABET  # base64url: 6 bits a character
    assert len(random_part) * 6 >= 160


def test_tokens_never_repeat(researcher):
    secrets = {api_token_create(user=researcher, name=f"token {n}")[1] for n in range(50)}

    assert len(secrets) == 50
    # 50 random 256-bit strings share no long common prefix beyond "mwp_".
    random_parts = sorted(secret.removeprefix("mwp_") for secret in secrets)
    assert all(a[:8] != b[:8] for a, b in zip(random_parts, random_parts[1:]))


def test_new_token_with_an_expiry_date_expires_at_the_start_of_that_day(researcher_client, researcher):
    _create_on_account_page(researcher_client, expires_on=_in_days(30))

    token = ApiToken.objects.get(user=researcher)
    expected = timezone.make_aware(dt.datetime.combine(timezone.localdate() + dt.timedelta(days=30), dt.time.min))
    assert token.expires_at == expected


def test_new_token_without_an_expiry_date_lasts_until_revoked(researcher_client, researcher):
    _create_on_account_page(researcher_client, expires_on="")

    assert ApiToken.objects.get(user=researcher).expires_at is None


def test_account_page_offers_a_default_expiry_for_new_tokens(researcher_client):
    page = researcher_client.get("/account/").content.decode()

    assert f'value="{_in_days(settings.API_TOKEN_DEFAULT_LIFETIME_DAYS)}"' in page


@pytest.mark.parametrize("expires_on", [_in_days(-1), _in_days(0)])
def test_expiry_date_that_is_not_in_the_future_is_refused(researcher_client, expires_on):
    response = researcher_client.post("/account/tokens/", {"name": "old", "expires_on": expires_on})

    assert response.status_code == 400
    assert "Choose a date after today." in response.content.decode()
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="api_token.created").exists()


def test_token_without_a_name_is_refused(researcher_client):
    response = researcher_client.post("/account/tokens/", {"name": "", "expires_on": _in_days(5)})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_creating_a_token_by_get_is_not_allowed(researcher_client):
    response = researcher_client.get("/account/tokens/")

    assert response.status_code == 405
    assert not ApiToken.objects.exists()


def test_creating_a_token_needs_a_login(client, db):
    response = client.post("/account/tokens/", {"name": "sneaky"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not ApiToken.objects.exists()


def test_service_refuses_an_expiry_in_the_past(researcher):
    with pytest.raises(ValidationError, match="must be in the future"):
        api_token_create(user=researcher, name="old", expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert not ApiToken.objects.exists()


# --- Using a token ------------------------------------------------------------------


def test_token_authenticates_the_api(researcher_client, researcher, llama_catalog):
    secret = _create_on_account_page(researcher_client)

    response = _bearer(secret).get("/api/v1/models")

    assert response.status_code == 200
    assert response.json()["count"] == 5
    assert ApiToken.objects.get(user=researcher).last_used_at is not None


def test_token_belongs_to_its_owner(researcher):
    token, secret = api_token_create(user=researcher, name="who am i")

    assert api_token_authenticate(secret).user == researcher


def test_last_used_is_recorded_at_most_once_per_resolution(researcher, llama_catalog):
    token, secret = api_token_create(user=researcher, name="busy script")
    api = _bearer(secret)
    start = timezone.now()
    resolution = dt.timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS)

    with mock.patch("django.utils.timezone.now", return_value=start):
        assert api.get("/api/v1/models").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == start

    with mock.patch("django.utils.timezone.now", return_value=start + resolution - dt.timedelta(seconds=1)):
        assert api.get("/api/v1/models").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == start  # no write for a call within the resolution

    with mock.patch("django.utils.timezone.now", return_value=start + resolution):
        assert api.get("/api/v1/models").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == start + resolution


def test_using_a_token_writes_no_audit_event(researcher, llama_catalog):
    _, secret = api_token_create(user=researcher, name="quiet")
    before = AuditEvent.objects.count()

    _bearer(secret).get("/api/v1/models")

    assert AuditEvent.objects.count() == before


def test_expired_token_gets_401_with_the_api_error_body(researcher, llama_catalog):
    expires_at = timezone.now() + dt.timedelta(days=1)
    _, secret = api_token_create(user=researcher, name="short-lived", expires_at=expires_at)
    assert _bearer(secret).get("/api/v1/models").status_code == 200

    with mock.patch("django.utils.timezone.now", return_value=expires_at):
        response = _bearer(secret).get("/api/v1/models")

    error = _assert_api_error(response, 401)
    assert error["code"] == "authentication_failed"
    assert "expired" in error["message"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_token_gets_401(researcher, llama_catalog):
    token, secret = api_token_create(user=researcher, name="to revoke")

    api_token_revoke(token=token, actor=researcher)
    response = _bearer(secret).get("/api/v1/models")

    error = _assert_api_error(response, 401)
    assert "revoked" in error["message"]


def test_token_of_a_deactivated_account_gets_401(researcher, llama_catalog):
    _, secret = api_token_create(user=researcher, name="left the lab")
    researcher.is_active = False
    researcher.save(update_fields=["is_active"])

    _assert_api_error(_bearer(secret).get("/api/v1/models"), 401)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer two parts",
        "Bearer mwp_not-a-real-token",
        "Bearer not-even-the-prefix",
        "Bearer mwp_" + "a" * 300,
        "bearer mwp_lowercase-scheme-is-still-checked",
        "Bearer mwp_caf\u00e9",
    ],
)
def test_malformed_or_unknown_bearer_header_gets_401_with_the_api_error_body(db, llama_catalog, header):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get("/api/v1/models")

    error = _assert_api_error(response, 401)
    assert error["code"] == "authentication_failed"


def test_no_authorization_header_is_anonymous_on_public_endpoints(db, llama_catalog):
    response = APIClient().get("/api/v1/models")

    assert response.status_code == 200
    assert {row["access"] for row in response.json()["results"]} == {"none"}


# --- Revoking a token ---------------------------------------------------------------


def test_revoking_from_the_account_page_stops_the_token(researcher_client, researcher, llama_catalog):
    secret = _create_on_account_page(researcher_client, name="old laptop")
    token = ApiToken.objects.get(user=researcher)

    response = researcher_client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 302
    assert response["Location"] == "/account/"
    token.refresh_from_db()
    assert token.revoked_at is not None
    _assert_api_error(_bearer(secret).get("/api/v1/models"), 401)
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.actor == researcher
    assert event.target_id == str(token.pk)
    page = researcher_client.get("/account/").content.decode()
    assert "Token “old laptop” is revoked" in page
    assert 'class="badge">revoked' in page


def test_revoking_by_get_is_not_allowed(researcher_client, researcher, llama_catalog):
    token, secret = api_token_create(user=researcher, name="keep")

    response = researcher_client.get(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None
    assert _bearer(secret).get("/api/v1/models").status_code == 200


def test_revoking_another_users_token_is_404_and_leaves_it_working(researcher_client, outsider, llama_catalog):
    token, secret = api_token_create(user=outsider, name="outsider's")

    response = researcher_client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert _bearer(secret).get("/api/v1/models").status_code == 200
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


def test_revoking_needs_a_login(client, researcher):
    token, _ = api_token_create(user=researcher, name="keep")

    response = client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_twice_changes_nothing_the_second_time(researcher_client, researcher):
    token, _ = api_token_create(user=researcher, name="twice")
    researcher_client.post(f"/account/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    first_revoked_at = token.revoked_at

    response = researcher_client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at == first_revoked_at
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1


def test_account_page_lists_only_the_callers_tokens(researcher_client, researcher, outsider):
    api_token_create(user=researcher, name="mine")
    api_token_create(user=outsider, name="someone else's")

    page = researcher_client.get("/account/").content.decode()

    assert "mine" in page
    assert "someone else&#x27;s" not in page and "someone else's" not in page


def test_account_page_marks_expired_tokens(researcher_client, researcher):
    token, _ = api_token_create(user=researcher, name="stale", expires_at=timezone.now() + dt.timedelta(days=1))

    with mock.patch("django.utils.timezone.now", return_value=token.expires_at + dt.timedelta(hours=1)):
        page = researcher_client.get("/account/").content.decode()

    assert 'class="badge">expired' in page
    assert f'action="/account/tokens/{token.pk}/revoke/"' not in page


def test_operator_sees_tokens_in_the_admin_without_their_secrets(admin_user_client, researcher):
    _, secret = api_token_create(user=researcher, name="listed")

    response = admin_user_client.get("/admin/portal/apitoken/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "listed" in page
    assert secret not in page


def test_another_user_with_the_same_token_name_gets_a_different_token(db):
    first, second = UserFactory(), UserFactory()

    _, secret_one = api_token_create(user=first, name="laptop")
    _, secret_two = api_token_create(user=second, name="laptop")

    assert secret_one != secret_two
    assert api_token_authenticate(secret_one).user == first
    assert api_token_authenticate(secret_two).user == second
