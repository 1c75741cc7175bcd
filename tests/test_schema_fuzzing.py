"""The API against its documents, with a fuzzer (schemathesis): the portal API against the OpenAPI schema
it serves at /api/schema/, and the sandbox's OpenAI-compatible /v1/ against docs/sandbox-openapi.yaml.

For every operation, schemathesis sends requests made from the document, valid and invalid ones, in
this process through the WSGI application (the whole middleware stack), as a researcher and as a
reviewer, each with a personal API token, and checks every answer: no 5xx, a status and a content type
the document lists for the operation, and a body that matches the documented schema. Path ids are
often swapped for ids of real objects (the caller's requests and grants, another applicant's request,
a sandbox job) and request bodies often name real models and the license in force, so the requests
reach past the "not found" and into the services.

Bounded: a fixed seed, deterministic generation, 15 generated examples per operation and the coverage
phase's boundary cases (each limit, one past it, each wrong type), a few hundred requests per operation
at most, and no shrinking (the database changes as the requests run, so a failure is reported as the
request that failed, with a curl command to repeat it). The /v1/ operations run against a real sandbox
worker on the tiny demo model, asked for a few tokens at most, so a valid request is answered in
milliseconds; the portal API runs inside each test's transaction. The whole file takes about a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.distribution.bundles import bundle_create
from access.grants.services import grant_create
from access.requests.application import ApplicationData
from access.requests.services import access_request_submit
from access.review.services import access_request_request_info
from inference.sandbox.openai_params import completion_request_parse
from inference.sandbox.services import sandbox_job_submit
from portal.services import api_token_create
from portal.wsgi import application
from tests.factories import UserFactory
from tests.inference.sandbox import conftest as sandbox_conftest

# The sandbox worker of tests/inference/sandbox (one per module) and the demo model published where it
# reads it: its fixtures, found by pytest here too.
sandbox_folders = sandbox_conftest.sandbox_folders
sandbox_settings = sandbox_conftest.sandbox_settings
sandbox_worker = sandbox_conftest.sandbox_worker
sandbox_ready = sandbox_conftest.sandbox_ready

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Positive and negative examples, from a fixed seed; the coverage phase's boundary values too (each
# limit and one past it), without its requests in undocumented methods (405 is not the point here).
FUZZ_CONFIG = {
    "seed": 14,
    "generation": {"mode": "all", "max-examples": 15, "deterministic": True, "no-shrink": True},
    "phases": {
        "examples": {"enabled": False},
        "coverage": {"enabled": True, "unexpected-methods": []},
        "stateful": {"enabled": False},
    },
}
HYPOTHESIS = hypothesis_settings(
    deadline=None,
    database=None,  # nothing written under .hypothesis/: every run starts from the seed
    # Fixtures (the personas, their objects) are made once per operation, on purpose.
    suppress_health_check=list(HealthCheck),
)

portal_api = schemathesis.openapi.from_wsgi(
    "/api/schema/", application, config=schemathesis.Config.from_dict(FUZZ_CONFIG)
)
# The sandbox's document has examples of valid requests, sent first: they reach the worker, whose answers
# (JSON and event streams) are checked against the document too. No coverage phase here: it varies every
# field of every example one by one, each a request the worker runs.
SANDBOX_CONFIG = {
    **FUZZ_CONFIG,
    "phases": {**FUZZ_CONFIG["phases"], "examples": {"enabled": True}, "coverage": {"enabled": False}},
}
# Called over HTTP on the live server: the views are async, and in-process WSGI would run them with
# async_to_sync in this thread, which refuses once a browser test has left Playwright's event loop here.
sandbox_api = schemathesis.openapi.from_path(
    settings.BASE_DIR / "docs" / "sandbox-openapi.yaml", config=schemathesis.Config.from_dict(SANDBOX_CONFIG)
)

DEMO = "llama-demo-tiny"
# The demo model's answers in the sandbox test: a few tokens, so valid requests finish in milliseconds.
DEMO_MAX_TOKENS = 4

# Real objects' ids per path, filled by the fixtures of the running test: path ids are drawn from
# them (or left as generated) by the hooks below.
_known: dict[str, list] = {}


@portal_api.hook("flatmap_path_parameters")
@sandbox_api.hook("flatmap_path_parameters")
def _real_ids_in_paths(context, path_parameters):
    known = next((ids for prefix, ids in _known.items() if context.operation.path.startswith(prefix)), None)
    if not known or not path_parameters:
        return st.just(path_parameters)
    (name,) = path_parameters
    return st.one_of(st.just(path_parameters), st.sampled_from(known).map(lambda value: {name: value}))


def _three_in_four(body: dict, real: dict, *, drop: tuple[str, ...] = ()):
    """The body as generated, or (three times in four) with the fields of ``real`` drawn from its strategies
    and those named in ``drop`` left out."""
    kept = {name: value for name, value in body.items() if name not in drop}
    swapped = st.fixed_dictionaries(real).map(lambda values: {**kept, **values})
    return st.sampled_from([0, 1, 2, 3]).flatmap(lambda n: st.just(body) if n == 0 else swapped)


@portal_api.hook("flatmap_body")
def _real_models_and_license(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    slugs = st.sampled_from(_known.get("slugs", [DEMO]))
    real = {
        name: strategy
        for name, strategy in (
            ("variant", slugs),
            ("variants", st.lists(slugs, min_size=1, max_size=3)),
            ("license_id", st.sampled_from(_known.get("license_ids", [0]))),
        )
        if name in body
    }
    return _three_in_four(body, real) if real else st.just(body)


@sandbox_api.hook("flatmap_body")
def _the_demo_model_briefly(context, body):
    """Name the demo model and ask for a few tokens, so a valid request is run by the worker in milliseconds."""
    if not isinstance(body, dict) or "model" not in body:
        return st.just(body)
    real = {"model": st.just(DEMO), "max_tokens": st.integers(1, DEMO_MAX_TOKENS)}
    return _three_in_four(body, real, drop=("max_completion_tokens",))


# --- The portal API (/api/schema/) -------------------------------------------------------------------


APPLICATION = ApplicationData(
    full_name="Grace Hopper",
    affiliation="University of Example",
    organization_type="academic",
    position="Professor",
    country="GB",
    use_case="We compare how factual knowledge is stored across model sizes with activation patching. " * 6,
    publications=["https://scholar.example.org/grace"],
)


def _submit(applicant, *slugs: str):
    variants = list(ModelVariant.objects.filter(slug__in=slugs))
    return access_request_submit(
        applicant=applicant, variants=variants, data=APPLICATION, license_version=license_current(variants[0].family)
    )


@pytest.fixture
def requests_in_this_transaction(db):
    """Requests through the WSGI application stay inside the test's transaction: Django's handler
    closes the database connection around each request, which would end it (Django's test client
    does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def portal_objects(
    requests_in_this_transaction, settings, researcher, reviewer, published_demo_weights, active_grant_make
):
    """The researcher's requests (one waiting for review, one asked for more information), grants (one
    active with links, one waiting for the license) and a sandbox job; another applicant's request in
    the reviewers' queue. Their ids are what the fuzzer's path ids are drawn from."""
    variant, _, _ = published_demo_weights
    # Low enough that the fuzzer reaches the per-grant limit on new links, and its documented 429.
    settings.DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY = 2
    applicant = UserFactory(email="grace@uni.example.edu")
    submitted = _submit(researcher, "llama-7b")
    info_requested = access_request_request_info(
        access_request=_submit(researcher, "llama-13b"), reviewer=reviewer, message="Which cluster will you use?"
    )
    theirs = _submit(applicant, "llama-7b", "llama-33b")
    active = active_grant_make(user=researcher, variant=variant, reviewer=reviewer)
    bundle_create(grant=active, user=researcher)
    waiting = grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-33b"), actor=reviewer, reason="Co-author."
    )
    # Inside the test's transaction, which never commits: the job is never sent to a worker.
    job, _ = sandbox_job_submit(
        user=researcher,
        variant=variant,
        grant=active,
        generation=completion_request_parse({"model": DEMO, "prompt": "Hi"}),
    )
    request_ids = [submitted.pk, info_requested.pk, theirs.pk]
    grant_ids = [active.pk, waiting.pk]
    _known.update({
        "/api/v1/access-requests/": request_ids,
        "/api/v1/review/requests/": request_ids,
        "/api/v1/grants/": grant_ids,
        "/api/v1/review/grants/": grant_ids,
        "/api/v1/sandbox/jobs/": [str(job.pk)],
        "/api/v1/licenses/": [license_current(variant.family).pk],
        "/api/v1/models/": list(ModelVariant.objects.values_list("slug", flat=True)),
        "slugs": list(ModelVariant.objects.values_list("slug", flat=True)),
        "license_ids": [license_current(variant.family).pk],
    })  # fmt: skip
    yield
    _known.clear()


@pytest.fixture(params=["researcher", "reviewer"])
def caller_token(request, portal_objects) -> str:
    """A personal API token of the persona the test runs as."""
    return api_token_create(user=request.getfixturevalue(request.param), name="schema fuzzing")[1]


@portal_api.parametrize()
@HYPOTHESIS
def test_the_api_answers_only_what_its_schema_documents(case, caller_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {caller_token}"}, checks=CHECKS)


# --- The sandbox (/v1/, docs/sandbox-openapi.yaml) ---------------------------------------------------


@pytest.fixture
def sandbox_objects(sandbox_ready, researcher, reviewer, active_grant_make):
    """The researcher may use the demo model in the sandbox; the reviewer may not."""
    active_grant_make(user=researcher, variant=sandbox_ready, reviewer=reviewer)
    _known.update({"/models/": [DEMO]})
    yield
    _known.clear()


@pytest.fixture(params=["researcher", "reviewer"])
def sandbox_caller_token(request, sandbox_objects) -> str:
    return api_token_create(user=request.getfixturevalue(request.param), name="schema fuzzing")[1]


@pytest.mark.real_worker
@sandbox_api.parametrize()
@HYPOTHESIS
def test_the_sandbox_answers_only_what_its_document_says(case, sandbox_caller_token, live_server):
    case.call_and_validate(
        base_url=f"{live_server.url}/v1", headers={"Authorization": f"Bearer {sandbox_caller_token}"}, checks=CHECKS
    )


# --- The documented limits of every list: page and page_size -----------------------------------------


def test_the_schema_documents_the_limits_of_every_list(api_client):
    paths = api_client.get("/api/schema/", {"format": "json"}).json()["paths"]
    lists = {path: ops["get"] for path, ops in paths.items() if "get" in ops and any(
        parameter["name"] == "page" for parameter in ops["get"].get("parameters", ()))}  # fmt: skip

    assert "/api/v1/models" in lists and "/api/v1/review/requests" in lists
    for path, operation in lists.items():
        parameters = {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}
        assert parameters["page"] == {"type": "integer", "minimum": 1}, path
        assert parameters["page_size"] == {"type": "integer", "minimum": 1, "maximum": 200}, path
        assert {"200", "400", "401", "404"} <= set(operation["responses"]), path


@pytest.mark.parametrize(
    ("param", "value"),
    [("page", "0"), ("page", "-1"), ("page", "1.5"), ("page", "²"), ("page_size", "0"), ("page_size", "201"),
     ("page_size", "²"), ("page_size", "99999999999999999999")],
)  # fmt: skip
def test_a_page_or_page_size_out_of_range_is_refused_naming_the_limit(api_client, llama_catalog, param, value):
    response = api_client.get("/api/v1/models", {param: value})

    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "whole number from 1" in error["fields"][param][0]


def test_the_largest_page_size_is_served_and_a_page_past_the_last_is_a_404(api_client, llama_catalog):
    everything = api_client.get("/api/v1/models", {"page_size": 200})
    past_the_end = api_client.get("/api/v1/models", {"page": 2, "page_size": 200})

    assert everything.status_code == 200
    assert len(everything.json()["results"]) == everything.json()["count"] > 1
    assert past_the_end.status_code == 404
    assert "There is no page 2" in past_the_end.json()["error"]["message"]
