"""System checks an operator sees when deploying (``migrate`` runs them)."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from access.distribution.checks import LOCAL_STORAGE_STREAMED_BY_DJANGO


def _ids() -> set[str]:
    return {message.id for message in run_checks()}


@pytest.mark.parametrize(
    ("production", "backend", "accel_prefix", "warned"),
    [
        (True, "local", "", True),
        (True, "local", "/protected-weights/", False),
        (True, "s3", "", False),
        (False, "local", "", False),  # make run: the development server has no worker timeout
    ],
)
def test_production_warns_when_gunicorn_would_stream_local_weight_files(settings, production, backend, accel_prefix,
                                                                        warned):
    settings.PRODUCTION = production
    settings.PORTAL_STORAGE_BACKEND = backend
    settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX = accel_prefix
    assert (LOCAL_STORAGE_STREAMED_BY_DJANGO in _ids()) is warned
