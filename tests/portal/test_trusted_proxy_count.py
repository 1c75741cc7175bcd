"""Production refuses to start until TRUSTED_PROXY_COUNT is set: behind a proxy, the default 0
makes every client look like the proxy, so the leak rule sees one network and the login limit
counts everyone's failures together. Production runs in a subprocess (settings are read once
per process), with the environment tests/test_deployment.py gives production."""

from __future__ import annotations

import json

import pytest

from tests.test_deployment import _MANAGE, COMPOSE_FILE, _compose_config, _production_env, _run

APP_SERVICES_RUNNING_DJANGO = ("migrate", "web", "asgi", "worker", "sandbox-worker", "beat")


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    return _production_env(tmp_path)


@pytest.mark.parametrize("value", [None, ""])
def test_production_refuses_to_start_without_trusted_proxy_count(production_env, value):
    if value is None:
        del production_env["TRUSTED_PROXY_COUNT"]
    else:
        production_env["TRUSTED_PROXY_COUNT"] = value
    result = _run(_MANAGE, "check", "--deploy", env=production_env)
    assert result.returncode != 0
    assert "TRUSTED_PROXY_COUNT must be set when PORTAL_ENV=production" in result.stderr
    assert "X-Forwarded-For" in result.stderr  # says what the number is


@pytest.mark.parametrize("value", ["0", "1", "2"])
def test_production_starts_with_trusted_proxy_count_set_explicitly_zero_included(production_env, value):
    production_env["TRUSTED_PROXY_COUNT"] = value
    result = _run(
        _MANAGE,
        "shell",
        "-c",
        "from django.conf import settings; print(settings.ALLAUTH_TRUSTED_PROXY_COUNT)",
        env=production_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == value
    check = _run(_MANAGE, "check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert check.returncode == 0, check.stdout + check.stderr


def test_production_refuses_a_negative_trusted_proxy_count(production_env):
    production_env["TRUSTED_PROXY_COUNT"] = "-1"
    result = _run(_MANAGE, "check", env=production_env)
    assert result.returncode != 0
    assert "TRUSTED_PROXY_COUNT must be 0 or more" in result.stderr


def test_development_still_defaults_to_no_proxy(production_env):
    del production_env["TRUSTED_PROXY_COUNT"]
    production_env["PORTAL_ENV"] = "development"
    result = _run(
        _MANAGE,
        "shell",
        "-c",
        "from django.conf import settings; print(settings.ALLAUTH_TRUSTED_PROXY_COUNT)",
        env=production_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_compose_tells_every_django_service_about_its_nginx(tmp_path):
    config = json.loads(_compose_config(tmp_path, COMPOSE_FILE, args=("--format", "json")).stdout)
    for name in APP_SERVICES_RUNNING_DJANGO:
        assert config["services"][name]["environment"]["TRUSTED_PROXY_COUNT"] == "1", name
