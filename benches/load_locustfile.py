"""The users of benches/load.py, for locust: run by load.py in a process of its own, never imported by
Django's processes or the test suite (locust patches the standard library with gevent when imported).

load.py writes a plan (JSON, its path in LOAD_PLAN): the site's and the sandbox's base URLs, one account
per simulated user (API token and logged-in session, their grant, request and model) and how many users
of each kind to start. Every request's outcome and time is written to LOAD_RESULTS (JSON) when locust
quits, so load.py computes exact percentiles itself.

Kinds of user, each with its own account but the first:
- Reference: the trivial view /livez, the reference the other rows compare with;
- ResearcherBrowsing: the site's pages as a logged-in researcher;
- ApiClient: the JSON API with a bearer token, including new download links;
- Downloader: gateway downloads of the demo weights (whole files and Range parts) with its own links;
- Reviewer: the reviewers' queue, as a page (MFA-verified session) and through the API;
- SandboxStreamer: streamed completions (/v1/completions, stream: true) on the ASGI server.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from http.cookiejar import Cookie
from urllib.parse import urlsplit

from locust import FastHttpUser, between, events, task

PLAN = json.loads(open(os.environ["LOAD_PLAN"]).read())  # noqa: SIM115 (read once at import)
RESULTS_PATH = os.environ["LOAD_RESULTS"]
COUNTS = PLAN["counts"]
_researchers = itertools.cycle(PLAN["researchers"])
_reviewers = itertools.cycle(PLAN["reviewers"])

# (type, name) -> [response times in ms]; failures as (type, name, message); first and last request.
_times: dict[str, list[float]] = {}
_failures: list[list[str]] = []
_span = [float("inf"), 0.0]


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, **_):
    key = f"{request_type} {name}"
    _times.setdefault(key, []).append(response_time)
    if exception is not None:
        _failures.append([key, str(exception)[:300]])
    now = time.time()
    _span[0] = min(_span[0], now - response_time / 1000)
    _span[1] = max(_span[1], now)


@events.quitting.add_listener
def _write_results(environment, **_):
    with open(RESULTS_PATH, "w") as f:
        json.dump({"times": _times, "failures": _failures, "span": _span}, f)


def _log_in(client, session_key: str) -> None:
    """Give the user's cookie jar the session load.py logged in; cookies the site sets join it there."""
    host = urlsplit(PLAN["web"]).hostname
    client.cookiejar.set_cookie(Cookie(
        0, "sessionid", session_key, None, False, host, False, False, "/", True, False, None, False, None, None, {}
    ))  # fmt: skip


def _expect(response, status: int, what: str = "") -> None:
    """Inside ``catch_response``: a failure unless the status is the expected one (no redirect followed)."""
    if response.status_code != status:
        response.failure(f"{response.status_code} instead of {status}{what}: {(response.text or '')[:200]!r}")
    else:
        response.success()


class PortalUser(FastHttpUser):
    abstract = True
    host = PLAN["web"]
    wait_time = between(0.2, 1.0)

    def get(self, path: str, name: str, *, status: int = 200, headers: dict | None = None):
        """GET without following redirects (a redirect to the login page is a failure, not a page)."""
        with self.client.get(path, name=name, headers=headers, allow_redirects=False, catch_response=True) as response:
            _expect(response, status)
        return response


class Reference(PortalUser):
    """The trivial view of the same site under the same load: what waiting for a free worker costs."""

    fixed_count = COUNTS["Reference"]
    wait_time = between(0.5, 1.0)

    @task
    def livez(self):
        self.get("/livez", "reference: /livez (trivial view)")


class ResearcherBrowsing(PortalUser):
    fixed_count = COUNTS["ResearcherBrowsing"]

    def on_start(self):
        self.account = next(_researchers)
        _log_in(self.client, self.account["session"])

    @task(3)
    def home(self):
        self.get("/", "page: / (catalog)")

    @task(2)
    def model_page(self):
        self.get(f"/models/{self.account['model']}/", "page: /models/<slug>/")

    @task(2)
    def my_requests(self):
        self.get("/requests/", "page: /requests/")
        self.get(f"/requests/{self.account['request']}/", "page: /requests/<id>/")

    @task(2)
    def my_grants(self):
        self.get("/grants/", "page: /grants/")

    @task(2)
    def downloads_page(self):
        self.get(f"/grants/{self.account['grant']}/downloads/", "page: /grants/<id>/downloads/")


class ApiClient(PortalUser):
    fixed_count = COUNTS["ApiClient"]

    def on_start(self):
        self.account = next(_researchers)
        self.auth = {"Authorization": f"Bearer {self.account['token']}"}

    @task(3)
    def models(self):
        self.get("/api/v1/models", "api: GET /api/v1/models", headers=self.auth)

    @task(2)
    def grants(self):
        self.get("/api/v1/grants", "api: GET /api/v1/grants", headers=self.auth)

    @task(2)
    def access_requests(self):
        self.get("/api/v1/access-requests", "api: GET /api/v1/access-requests", headers=self.auth)
        self.get(
            f"/api/v1/access-requests/{self.account['request']}", "api: GET /api/v1/access-requests/{id}",
            headers=self.auth,
        )  # fmt: skip

    @task(1)
    def new_download_links(self):
        with self.client.post(
            f"/api/v1/grants/{self.account['grant']}/download-links", name="api: POST /api/v1/grants/{id}/download-links",
            headers=self.auth, catch_response=True,
        ) as response:  # fmt: skip
            _expect(response, 201)


class Downloader(PortalUser):
    """Fetches the demo weights with links of its own, as download.sh and parallel downloaders do."""

    fixed_count = COUNTS["Downloader"]

    def on_start(self):
        self.account = next(_researchers)
        self.auth = {"Authorization": f"Bearer {self.account['token']}"}
        self.files: list[dict] = []
        self.new_links()

    def new_links(self):
        with self.client.post(
            f"/api/v1/grants/{self.account['grant']}/download-links", name="api: POST /api/v1/grants/{id}/download-links",
            headers=self.auth, catch_response=True,
        ) as response:  # fmt: skip
            _expect(response, 201)
            if response.status_code == 201:
                self.files = [
                    {"path": urlsplit(f["url"]).path, "size": f["size"], "name": f["name"]}
                    for f in response.json()["files"]
                ]

    def _download(self, name: str, status: int, expected_bytes: int, headers: dict | None = None):
        file = self.largest
        with self.client.get(file["path"], name=name, headers=headers, allow_redirects=False, catch_response=True) as r:
            if r.status_code != status:
                r.failure(f"{r.status_code} instead of {status}: {(r.text or '')[:200]!r}")
            elif len(r.content) != expected_bytes:
                r.failure(f"{len(r.content)} bytes instead of {expected_bytes}")
            else:
                r.success()

    @property
    def largest(self) -> dict:
        return max(self.files, key=lambda f: f["size"])

    @task(2)
    def whole_file(self):
        if self.files:
            self._download("/dl/ whole file (200)", 200, self.largest["size"])

    @task(2)
    def range_parts(self):
        """A parallel downloader's parts: the first half, then the rest as a resume."""
        if not self.files:
            return
        size = self.largest["size"]
        half = size // 2
        self._download("/dl/ Range, first half (206)", 206, half, {"Range": f"bytes=0-{half - 1}"})
        self._download("/dl/ Range, resume to the end (206)", 206, size - half, {"Range": f"bytes={half}-"})

    @task(1)
    def small_file(self):
        if self.files:
            file = min(self.files, key=lambda f: f["size"])
            with self.client.get(file["path"], name="/dl/ small file (200)", catch_response=True) as r:
                _expect(r, 200)


class Reviewer(PortalUser):
    fixed_count = COUNTS["Reviewer"]

    def on_start(self):
        self.account = next(_reviewers)
        _log_in(self.client, self.account["session"])
        self.auth = {"Authorization": f"Bearer {self.account['token']}"}

    @task(2)
    def queue_page(self):
        self.get("/review/", "page: /review/ (queue)")

    @task(2)
    def queue_api(self):
        self.get("/api/v1/review/requests", "api: GET /api/v1/review/requests", headers=self.auth)


class SandboxStreamer(FastHttpUser):
    """Streamed completions on the ASGI server: the time to the first event (the response's headers
    wait for it) and to `data: [DONE]` are recorded apart."""

    fixed_count = COUNTS["SandboxStreamer"]
    host = PLAN["asgi"]
    wait_time = between(0.5, 1.5)

    def on_start(self):
        self.account = next(_researchers)
        self.auth = {"Authorization": f"Bearer {self.account['token']}", "Content-Type": "application/json"}

    @task
    def stream_completion(self):
        body = {
            "model": PLAN["sandbox_model"],
            "prompt": random.choice(PLAN["prompts"]),
            "max_tokens": PLAN["stream_max_tokens"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        problem = None
        length = 0
        with self.client.post(
            "/v1/completions", name="sandbox: POST /v1/completions, first event", data=json.dumps(body),
            headers=self.auth, stream=True, catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                problem = f"{response.status_code}: {(response.text or '')[:200]!r}"
                response.failure(problem)
            else:
                response.success()
                text = "".join(response.iter_content(chunk_size=4096))
                length = len(text)
                events_ = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
                if not events_ or events_[-1] != "[DONE]":
                    problem = f"the stream did not end with [DONE]: {text[-200:]!r}"
                elif any('"error"' in event[:12] for event in events_):
                    problem = f"an error event: {text[-300:]!r}"
        if problem is None or length:
            self.environment.events.request.fire(
                request_type="SSE", name="sandbox: POST /v1/completions, until [DONE]",
                response_time=(time.perf_counter() - start) * 1000, response_length=length,
                exception=Exception(problem) if problem else None, context={},
            )  # fmt: skip
