"""The WSGI entry point gunicorn loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from django.conf import settings


def test_loading_the_wsgi_application_imports_every_view_before_the_first_request():
    """A gunicorn worker imports portal.wsgi when it boots; the URLconf and the views must come
    with it, or the worker's first request (a download, a page) waits for those imports."""
    probe = (
        "import json, sys; import portal.wsgi; "
        "print(json.dumps([m in sys.modules for m in ('portal.urls', 'access.distribution.gateway.views', 'access.review.views')]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=settings.BASE_DIR, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, True, True]
