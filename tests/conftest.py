"""Shared fixtures: personas, clients logged in as them, the seeded catalog.

Personas (healthchecks style): a researcher who owns things, an outsider who must
not see them, a reviewer and an admin who both log in with a TOTP code.

Helpers every suite uses are fixtures that return the function they are named after:
``login_with_password``, ``login_with_totp``, ``totp_enable``, ``totp_now``,
``bearer_client`` (an API client with a new token of a user), ``active_grant_make``
(an active grant, for the download tests and the browser's) and ``unavailable``
(skip locally, fail in CI). Fixtures of one part of the suite live in the conftest.py
of its folder (tests/access/conftest.py, tests/access/<domain>/conftest.py,
tests/e2e/conftest.py).
"""

from __future__ import annotations

import os

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.utils import decrypt
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from portal import roles
from portal.services import api_token_create
from tests.factories import TEST_PASSWORD, UserFactory
from tests.totp import totp_code_fresh

pytest_plugins = ["tests.storage_fixtures", "tests.browser_fixtures"]

IN_CI = bool(os.environ.get("CI"))


def _unavailable(item, reason: str):
    # In CI a missing service is a broken environment, never a reason to skip.
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it; see .ci/run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _requirements(request):
    item = request.node
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _unavailable(item, "needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis") and not os.environ.get("REDIS_URL"):
        _unavailable(item, "needs Redis: set REDIS_URL=redis://...")
    if item.get_closest_marker("browser") and not os.path.exists(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")):
        _unavailable(item, "needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(autouse=True)
def _celery_tasks_run_in_process(request):
    """Tasks enqueued by the code under test run at once, in this process, so a test
    sees their effect (emails in the outbox). Tests marked ``real_worker`` send
    through the broker to a real worker process instead."""
    from portal.celery import app

    if request.node.get_closest_marker("real_worker"):
        yield
        return
    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The production hasher costs ~0.3 s a hash and the suite logs in hundreds of times;
    # password hashing itself is Django's, not ours to test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    # Rate-limit counters and used TOTP codes live in the cache; each test starts clean.
    # Without Redis, a cache private to this process, so clearing it never touches
    # the file cache of a `make run` server (or another test run) on this checkout.
    if not os.environ.get("REDIS_URL"):
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    yield
    cache.clear()


def _totp_enable(user) -> str:
    """Give the user an authenticator app; returns its secret."""
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def _totp_now(user) -> str:
    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    return totp_code_fresh(decrypt(authenticator.data["secret"]))


def _login_with_password(client, user, password: str = TEST_PASSWORD):
    response = client.post("/accounts/login/", {"login": user.email, "password": password})
    assert response.status_code == 302, response.content[:500]
    return response


def _login_with_totp(client, user, password: str = TEST_PASSWORD):
    """The real two-step login: password, then a code from the authenticator app."""
    response = _login_with_password(client, user, password)
    assert response["Location"].startswith("/accounts/2fa/authenticate/"), response["Location"]
    response = client.post("/accounts/2fa/authenticate/", {"code": _totp_now(user)})
    assert response.status_code == 302, response.content[:500]
    return response


def _bearer_client(user, name: str = "test token") -> APIClient:
    _, secret = api_token_create(user=user, name=name)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def _active_grant_make(*, user, variant, reviewer, **kwargs):
    from access.catalog.selectors import license_current
    from access.grants.services import grant_accept_license, grant_create

    grant = grant_create(user=user, variant=variant, actor=reviewer, reason="Collaborator on the project.", **kwargs)
    return grant_accept_license(grant=grant, user=user, license_version=license_current(variant.family))


# --- Helpers as fixtures: each returns the function it is named after -----------------------------


@pytest.fixture(scope="session")
def unavailable():
    """unavailable(item, reason): skip locally, fail in CI (for checks made outside ``_requirements``)."""
    return _unavailable


@pytest.fixture
def totp_enable():
    """totp_enable(user) gives the user an authenticator app and returns its secret."""
    return _totp_enable


@pytest.fixture
def totp_now():
    """totp_now(user): the current code of the user's authenticator app."""
    return _totp_now


@pytest.fixture
def login_with_password():
    """login_with_password(client, user, password=TEST_PASSWORD): the login form; asserts the redirect."""
    return _login_with_password


@pytest.fixture
def login_with_totp():
    """login_with_totp(client, user, password=TEST_PASSWORD): password, then a code from the app."""
    return _login_with_totp


@pytest.fixture
def bearer_client():
    """bearer_client(user, name="test token"): an APIClient that sends a new API token of the user."""
    return _bearer_client


@pytest.fixture
def researcher_api(researcher, bearer_client):
    """The researcher's API client, with a bearer token."""
    return bearer_client(researcher)


@pytest.fixture
def reviewer_api(reviewer, bearer_client):
    """The reviewer's API client, with a bearer token (made by an operator: no MFA step)."""
    return bearer_client(reviewer)


@pytest.fixture
def active_grant_make():
    """active_grant_make(user=, variant=, reviewer=, **grant_create_kwargs): a grant made by hand whose
    holder accepted the current license, so it is active (the download tests, browser ones too)."""
    return _active_grant_make


# --- Personas -------------------------------------------------------------------------------------


@pytest.fixture
def researcher(db):
    return UserFactory(email="ada@uni.example.edu")


@pytest.fixture
def outsider(db):
    return UserFactory(email="eve@elsewhere.example.com")


@pytest.fixture
def reviewer(db):
    user = UserFactory(email="rita.reviewer@lab.example.org", role=roles.REVIEWER)
    _totp_enable(user)
    return user


@pytest.fixture
def reviewer_without_mfa(db):
    return UserFactory(email="nomfa.reviewer@lab.example.org", role=roles.REVIEWER)


@pytest.fixture
def admin_user(db):
    user = UserFactory(email="adam.admin@lab.example.org", role=roles.ADMIN)
    _totp_enable(user)
    return user


@pytest.fixture
def researcher_client(client, researcher):
    _login_with_password(client, researcher)
    return client


@pytest.fixture
def reviewer_client(client, reviewer):
    _login_with_totp(client, reviewer)
    return client


@pytest.fixture
def admin_user_client(client, admin_user):
    _login_with_totp(client, admin_user)
    return client


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def llama_catalog(db):
    from access.seed import llama_release_seed

    return llama_release_seed()


@pytest.fixture(scope="session", autouse=True)
def _end_stray_database_sessions(django_db_setup, django_db_blocker):
    """Let the test database be dropped at the end of the run on PostgreSQL.

    A connection opened by a thread that has since ended (the live server's
    request threads, with Playwright's event loop around the e2e tests) is left
    idle, and DROP DATABASE refuses while it exists. Nothing runs any more at
    this point, so ending such sessions loses nothing.
    """
    yield
    # No test database when no test of the run used the database (pytest-django creates it only
    # for runs that need it): then there is nothing to drop, and the configured one may not exist.
    if connection.vendor != "postgresql" or not connection.settings_dict["NAME"].startswith("test_"):
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
