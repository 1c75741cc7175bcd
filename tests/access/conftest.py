"""Fixtures shared by the tests of more than one ``access`` domain.

- An application and its submission through the service, as the web form and the API do:
  ``application``, ``submit``, ``llama``, ``web_request`` and the values they use
  (``use_case_text``, ``applicant_ip``, ``applicant_user_agent``).
- The same through the API: ``api_application``, ``application_body``, ``api_apply``,
  ``decide``, ``current_license_id``, ``assert_error`` (docs/api.md's error body), and the
  personas' API clients ``researcher_api``, ``reviewer_api``, ``second_reviewer_api``.
- The audit trail a change leaves: ``new_audit_actions`` (a context manager, in order),
  ``audit_mark`` with ``audit_actions_since`` (sorted), ``audit_event_for``.
- Objects several domains start from: ``second_reviewer``, ``live_grant``, ``license_v1``,
  ``allow_list`` (a variant's automatic-approval domains), ``decisions_by_slug``.

A fixture named after a helper returns the helper itself, to be called with arguments.
"""

from __future__ import annotations

import contextlib

import pytest
from django.db.models import Max
from django.test import RequestFactory

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.services import grant_create
from access.requests.application import ApplicationData
from access.requests.services import access_request_submit
from portal import roles
from tests.factories import UserFactory

# Long enough to raise no "short use case" screening flag (SCREENING_SHORT_USE_CASE_CHARS, 400).
USE_CASE = (
    "We study how factual knowledge is stored in the feed-forward layers of large language models. "
    "With the weights we will run causal tracing and activation patching on LLaMA, compare the "
    "location of stored facts across model sizes, and test whether targeted edits generalise to "
    "paraphrases. All experiments run on our university cluster; results, code and evaluation "
    "data will be published openly, and the weights will never leave the cluster or be shared."
)
assert len(USE_CASE) >= 400
APPLICANT_IP = "198.51.100.20"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) PortalTests/1.0"
APPLICATION_FIELDS = {
    "full_name": "Ada Lovelace",
    "affiliation": "University of Example",
    "organization_type": "academic",
    "position": "Postdoctoral researcher",
    "country": "GB",
    "use_case": USE_CASE,
    "publications": ["https://scholar.example.org/ada"],
}


# --- Through the services -------------------------------------------------------------------------


def _application(**overrides) -> ApplicationData:
    return ApplicationData(**{**APPLICATION_FIELDS, **overrides})


def _llama(*slugs: str) -> list[ModelVariant]:
    by_slug = ModelVariant.objects.in_bulk(slugs, field_name="slug")
    return [by_slug[slug] for slug in slugs]


def _web_request(*, ip: str = APPLICANT_IP, user_agent: str = USER_AGENT):
    return RequestFactory().post("/", REMOTE_ADDR=ip, HTTP_USER_AGENT=user_agent)


def _submit(applicant, *slugs: str, ip: str | None = APPLICANT_IP, license_version=None, **fields):
    """Submit through the service as the web form and the API do."""
    variants = _llama(*(slugs or ("llama-7b",)))
    return access_request_submit(
        applicant=applicant,
        variants=variants,
        data=_application(**fields),
        license_version=license_version or license_current(variants[0].family),
        request=_web_request(ip=ip) if ip else None,
    )


@contextlib.contextmanager
def _new_audit_actions():
    """Collects the actions of the audit events written inside the block, in order."""
    mark = _audit_mark()
    actions: list[str] = []
    yield actions
    actions.extend(AuditEvent.objects.filter(id__gt=mark).order_by("id").values_list("action", flat=True))


def _audit_event_for(access_request, action: str) -> AuditEvent:
    return AuditEvent.objects.get(target_type="access.accessrequest", target_id=str(access_request.pk), action=action)


def _decisions_by_slug(access_request) -> dict[str, str]:
    return {rv.variant.slug: rv.decision for rv in access_request.requested_variants.select_related("variant")}


def _allow_list(slug: str, *domains: str) -> None:
    ModelVariant.objects.filter(slug=slug).update(auto_approve_email_domains=list(domains))


@pytest.fixture
def use_case_text() -> str:
    """The use case of every application below: long enough to raise no screening flag."""
    return USE_CASE


@pytest.fixture
def applicant_ip() -> str:
    """The address ``submit`` and ``web_request`` send from."""
    return APPLICANT_IP


@pytest.fixture
def applicant_user_agent() -> str:
    """The User-Agent ``web_request`` sends."""
    return USER_AGENT


@pytest.fixture
def application():
    """application(**overrides): Ada's clean application, as ``ApplicationData``."""
    return _application


@pytest.fixture
def llama():
    """llama(*slugs): the seeded variants with these slugs, in that order."""
    return _llama


@pytest.fixture
def web_request():
    """web_request(ip=..., user_agent=...): a POST the services read the client's address from."""
    return _web_request


@pytest.fixture
def submit():
    """submit(applicant, *slugs, ip=..., license_version=None, **application_overrides): an access
    request through ``access_request_submit`` (default llama-7b, the current license)."""
    return _submit


@pytest.fixture
def new_audit_actions():
    """``with new_audit_actions() as actions:`` collects the actions audited inside the block, in order."""
    return _new_audit_actions


@pytest.fixture
def audit_event_for():
    """audit_event_for(access_request, action): the one audit event of that action on the request."""
    return _audit_event_for


@pytest.fixture
def decisions_by_slug():
    """decisions_by_slug(access_request): each requested variant's decision by slug."""
    return _decisions_by_slug


@pytest.fixture
def allow_list():
    """allow_list(slug, *domains): the email domains a variant approves automatically."""
    return _allow_list


# --- Through the API ------------------------------------------------------------------------------


def _current_license_id() -> int:
    return license_current(ModelVariant.objects.get(slug="llama-7b").family).pk


def _application_body(variants=("llama-7b",), **overrides) -> dict:
    return {**APPLICATION_FIELDS, "variants": list(variants), "license_id": _current_license_id(), **overrides}


def _api_apply(api, variants=("llama-7b",), **overrides) -> dict:
    response = api.post("/api/v1/access-requests", _application_body(variants, **overrides), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _decide(api, request_id: int, decision: str, **body):
    return api.post(f"/api/v1/review/requests/{request_id}/decision", {"decision": decision, **body}, format="json")


def _assert_error(response, status: int, code: str | None = None) -> dict:
    """docs/api.md's error body: {"error": {"code", "message", "fields"?}} with the status."""
    assert response.status_code == status, response.content[:800]
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def _audit_mark() -> int:
    return AuditEvent.objects.aggregate(last=Max("id"))["last"] or 0


def _audit_actions_since(mark: int) -> list[str]:
    return sorted(AuditEvent.objects.filter(pk__gt=mark).values_list("action", flat=True))


@pytest.fixture
def api_application() -> dict:
    """The JSON fields of Ada's application (without ``variants`` and ``license_id``)."""
    return dict(APPLICATION_FIELDS)


@pytest.fixture
def current_license_id():
    """current_license_id(): the id of the LLaMA family's license in force."""
    return _current_license_id


@pytest.fixture
def application_body():
    """application_body(variants=("llama-7b",), **overrides): a POST /api/v1/access-requests body."""
    return _application_body


@pytest.fixture
def api_apply():
    """api_apply(api, variants=("llama-7b",), **overrides): apply through the API; asserts 201, returns the body."""
    return _api_apply


@pytest.fixture
def decide():
    """decide(api, request_id, decision, **body): POST the reviewer's decision; returns the response."""
    return _decide


@pytest.fixture
def assert_error():
    """assert_error(response, status, code=None): asserts docs/api.md's error body; returns its ``error``."""
    return _assert_error


@pytest.fixture
def audit_mark():
    """audit_mark(): the id of the latest audit event, for ``audit_actions_since``."""
    return _audit_mark


@pytest.fixture
def audit_actions_since():
    """audit_actions_since(mark): the actions audited after ``audit_mark()``, sorted."""
    return _audit_actions_since


# --- Personas and objects -------------------------------------------------------------------------


@pytest.fixture
def second_reviewer(db, totp_enable):
    """Another reviewer, for the two-person rule and hand-overs; logs in with a TOTP code too."""
    user = UserFactory(email="sam.second@lab.example.org", role=roles.REVIEWER)
    totp_enable(user)
    return user


@pytest.fixture
def second_reviewer_api(second_reviewer, bearer_client):
    return bearer_client(second_reviewer)


@pytest.fixture
def license_v1(llama_catalog):
    """The LLaMA license the seed publishes, version 1.0."""
    return license_current(llama_catalog)


@pytest.fixture
def live_grant(researcher, reviewer, llama_catalog):
    """A grant of llama-7b made by a reviewer by hand, waiting for the researcher to accept the license."""
    return grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Vetted co-author."
    )


@pytest.fixture
def scheduled_email_settings(settings):
    """What the scheduled emails read: the site's name and public URL, and the reminder lead time."""
    settings.PORTAL_SITE_NAME = "Model Weights Portal"
    settings.PORTAL_BASE_URL = "http://testserver.example"
    settings.GRANT_EXPIRY_REMINDER_DAYS = 14
