"""The reviewers' web pages: who reaches them (every review URL, the grant and
statistics pages' too), the queue (filters, age badges, bulk decisions, a query count
that does not grow with the data) and a request's detail page (notes, claim and
assign, approve / reject / ask for more information, the two-person rule, one's own
request). The grant pages are tested in tests/access/grants/test_pages.py, the
statistics in tests/access/review/test_stats.py.

Personas: a reviewer and a second reviewer who log in with TOTP, a reviewer
without MFA, a researcher who applies, an outsider who must see nothing."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.grants.models import Grant, GrantStatus
from access.grants.services import grant_create
from access.requests.models import (
    AccessRequest,
    MessageKind,
    OrganizationType,
    RequestedVariant,
    RequestStatus,
    ScreeningFlag,
    ScreeningFlagCode,
    VariantDecision,
)
from access.review.models import DecisionKind, RejectionTemplate, ReviewDecision, ReviewNote
from access.review.selectors import approvals_needed, review_requests_annotate_approvals
from access.review.services import access_request_approve, access_request_claim, access_request_reject
from access.review.views import QUEUE_PAGE_SIZE
from portal import roles
from portal.models import User
from tests.factories import UserFactory

ENROL_URL = "/accounts/2fa/required/"  # why an authenticator app is required, then its set-up
LOGIN_URL = "/accounts/login/"


# --- Personas and data ------------------------------------------------------------------


@pytest.fixture
def second_reviewer_client(second_reviewer, login_with_totp):
    client = Client()
    login_with_totp(client, second_reviewer)
    return client


def _reload(obj):
    return type(obj).objects.get(pk=obj.pk)


def _events(obj, action: str | None = None):
    events = AuditEvent.objects.filter(target_type=obj._meta.label_lower, target_id=str(obj.pk))
    return events.filter(action=action) if action else events


def _workflow_events() -> int:
    """Audit events of requests and grants (a logout writes its own, of the account)."""
    return AuditEvent.objects.filter(target_type__in=["access.accessrequest", "access.grant"]).count()


def _text(response) -> str:
    return response.content.decode()


def _queue_references(response) -> list[str]:
    return re.findall(r'data-testid="queue-row" data-reference="([^"]+)"', _text(response))


# Every review URL with the method it answers to; pk placeholders are filled per test.
REVIEW_URLS = [
    ("get", "review-queue", None),
    ("post", "review-bulk", None),
    ("get", "review-detail", "request"),
    ("post", "review-note", "request"),
    ("post", "review-claim", "request"),
    ("post", "review-decision", "request"),
    ("get", "review-grants", None),
    ("post", "review-grants", None),
    ("post", "review-grant-action", "grant"),
    ("get", "review-stats", None),
]
URL_IDS = [f"{method}-{name}" for method, name, _ in REVIEW_URLS]


def _url(name: str, target: str | None, access_request, grant) -> str:
    if target == "request":
        return reverse(name, args=[access_request.pk])
    if target == "grant":
        return reverse(name, args=[grant.pk, "revoke"])
    return reverse(name)


def _payload(name: str, access_request) -> dict:
    """A request that would change something if it got through."""
    return {
        "review-bulk": {"requests": [access_request.pk], "decision": "reject", "reason": "No."},
        "review-note": {"text": "A note"},
        "review-claim": {},
        "review-decision": {"decision": "reject", "reason": "No."},
        "review-grants": {"email": "ada@uni.example.edu", "variant": "llama-13b", "reason": "Vetted."},
        "review-grant-action": {"reason": "Breach."},
    }.get(name, {})


# --- Who reaches the pages --------------------------------------------------------------


@pytest.mark.parametrize(("method", "name", "target"), REVIEW_URLS, ids=URL_IDS)
def test_reviewer_without_mfa_is_sent_to_enrol_from_every_review_url(
    client, reviewer_without_mfa, pending, live_grant, method, name, target, login_with_password
):
    login_with_password(client, reviewer_without_mfa)
    events_before = _workflow_events()

    response = getattr(client, method)(_url(name, target, pending, live_grant), _payload(name, pending))

    assert response.status_code == 302
    assert response["Location"].startswith(ENROL_URL)
    assert _workflow_events() == events_before
    assert _reload(pending).status == RequestStatus.SUBMITTED


@pytest.mark.parametrize(("method", "name", "target"), REVIEW_URLS, ids=URL_IDS)
def test_reviewer_whose_session_skipped_the_code_is_logged_out_at_every_review_url(
    client, reviewer, pending, live_grant, method, name, target
):
    client.force_login(reviewer)  # e.g. a session from before the account became a reviewer's
    events_before = _workflow_events()

    response = getattr(client, method)(_url(name, target, pending, live_grant), _payload(name, pending))

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)
    assert "_auth_user_id" not in client.session
    assert _workflow_events() == events_before


@pytest.mark.parametrize(("method", "name", "target"), REVIEW_URLS, ids=URL_IDS)
def test_anonymous_visitor_is_sent_to_log_in_from_every_review_url(client, pending, live_grant, method, name, target):
    response = getattr(client, method)(_url(name, target, pending, live_grant), _payload(name, pending))

    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN_URL)


@pytest.mark.parametrize(("method", "name", "target"), REVIEW_URLS, ids=URL_IDS)
def test_researcher_gets_403_at_every_review_url(
    client, outsider, pending, live_grant, method, name, target, login_with_password
):
    login_with_password(client, outsider)
    events_before = _workflow_events()

    response = getattr(client, method)(_url(name, target, pending, live_grant), _payload(name, pending))

    assert response.status_code == 403
    assert _workflow_events() == events_before
    assert _reload(pending).status == RequestStatus.SUBMITTED
    assert _reload(live_grant).status == GrantStatus.LICENSE_REQUIRED


@pytest.mark.parametrize(
    ("wrong_method", "name", "target"),
    [
        ("post", "review-queue", None),
        ("get", "review-bulk", None),
        ("post", "review-detail", "request"),
        ("get", "review-note", "request"),
        ("get", "review-claim", "request"),
        ("get", "review-decision", "request"),
        ("put", "review-grants", None),
        ("get", "review-grant-action", "grant"),
        ("post", "review-stats", None),
    ],
)
def test_wrong_method_gets_405(reviewer_client, pending, live_grant, wrong_method, name, target):
    response = getattr(reviewer_client, wrong_method)(_url(name, target, pending, live_grant))

    assert response.status_code == 405


def test_admin_works_the_queue_too(admin_user_client, pending):
    response = admin_user_client.get(reverse("review-queue"))

    assert response.status_code == 200
    assert pending.reference in _text(response)


def test_navigation_shows_review_to_reviewers_only(reviewer_client, outsider, llama_catalog, login_with_password):
    assert 'data-testid="nav-review"' in _text(reviewer_client.get(reverse("catalog")))

    other = Client()
    login_with_password(other, outsider)
    assert 'data-testid="nav-review"' not in _text(other.get(reverse("catalog")))


# --- The queue --------------------------------------------------------------------------


def test_queue_shows_counts_and_waiting_requests_oldest_first_with_age_badges(
    reviewer_client, researcher, outsider, llama_catalog, submit
):
    now = timezone.now()
    fresh = submit(researcher, "llama-7b")
    week_old = submit(outsider, "llama-7b", full_name="Eve Example", affiliation="Elsewhere Lab")
    four_days = submit(UserFactory(), "llama-13b", full_name="Flo Four", affiliation="Four Institute")
    AccessRequest.objects.filter(pk=week_old.pk).update(submitted_at=now - dt.timedelta(days=8))
    AccessRequest.objects.filter(pk=four_days.pk).update(submitted_at=now - dt.timedelta(days=4))
    decided = submit(UserFactory(), "llama-33b", full_name="Dee Decided", affiliation="Done Lab")
    access_request_reject(access_request=decided, reviewer=UserFactory(role=roles.REVIEWER), reason="Out of scope.")

    response = reviewer_client.get(reverse("review-queue"))

    assert response.status_code == 200
    assert _queue_references(response) == [week_old.reference, four_days.reference, fresh.reference]
    page = _text(response)
    assert re.search(r'data-status="submitted"><strong>3</strong>', page)
    assert re.search(r'data-status="rejected"><strong>1</strong>', page)
    rows = page.split('data-testid="queue-row"')[1:]
    assert 'class="age age-bad"' in rows[0]
    assert 'class="age age-warn"' in rows[1]
    assert 'class="age age-ok"' in rows[2]
    assert decided.reference not in page


def test_queue_shows_flags_as_badges(reviewer_client, llama_catalog, submit):
    flagged = submit(UserFactory(email="someone@gmail.com"), "llama-7b", use_case="Short but valid. " * 10)
    # A use case the form accepted is not flagged short; one accepted under a lower minimum is.
    assert not flagged.flags.filter(code=ScreeningFlagCode.SHORT_USE_CASE).exists()
    ScreeningFlag.objects.create(
        request=flagged, code=ScreeningFlagCode.SHORT_USE_CASE, reason="The use case has 170 characters."
    )

    page = _text(reviewer_client.get(reverse("review-queue")))

    row = page.split(f'data-reference="{flagged.reference}"')[1].split("</tr>")[0]
    assert 'class="badge flag">Free-mail email domain' in row
    assert 'class="badge flag">Use case is short' in row


def test_queue_filters_by_status_variant_organization_country_flag_and_assignee(
    reviewer_client, reviewer, second_reviewer, researcher, outsider, llama_catalog, submit
):
    academic = submit(researcher, "llama-7b")
    industry = submit(
        outsider, "llama-13b", organization_type=OrganizationType.INDUSTRY_LAB, country="DE",
        full_name="Eve Example", affiliation="Elsewhere Lab",
    )  # fmt: skip
    flagged = submit(UserFactory(email="free@gmail.com"), "llama-33b", full_name="Fay Free", affiliation="Free Lab")
    access_request_claim(access_request=academic, reviewer=reviewer)
    access_request_claim(access_request=industry, reviewer=reviewer, assignee=second_reviewer)
    queue = reverse("review-queue")

    def shown(**params):
        return set(_queue_references(reviewer_client.get(queue, params)))

    assert shown() == {academic.reference, industry.reference, flagged.reference}
    assert shown(variant="llama-13b") == {industry.reference}
    assert shown(organization_type="industry_lab") == {industry.reference}
    assert shown(country="DE") == {industry.reference}
    assert shown(flag="free_mail_domain") == {flagged.reference}
    assert shown(assignee="me") == {academic.reference}
    assert shown(assignee="none") == {flagged.reference}
    assert shown(assignee=second_reviewer.email.upper()) == {industry.reference}
    assert shown(status="submitted") == {flagged.reference}
    assert shown(status="in_review", variant="llama-7b") == {academic.reference}


def test_queue_reports_an_invalid_filter_and_ignores_it(reviewer_client, pending):
    response = reviewer_client.get(reverse("review-queue"), {"status": "lost", "variant": "llama-7b"})

    assert response.status_code == 200
    assert "Select a valid choice" in _text(response)
    assert _queue_references(response) == [pending.reference]


def test_queue_shows_approvals_still_needed_for_two_person_variants(reviewer_client, reviewer, pending_65b, pending):
    def needed(reference):
        page = _text(reviewer_client.get(reverse("review-queue")))
        row = page.split(f'data-reference="{reference}"')[1].split("</tr>")[0]
        return re.search(r'data-testid="approvals-needed">(\d+)<', row).group(1)

    assert needed(pending_65b.reference) == "2"
    assert needed(pending.reference) == "1"

    access_request_approve(access_request=pending_65b, reviewer=UserFactory(role=roles.REVIEWER))

    assert needed(pending_65b.reference) == "1"


def test_queue_paginates_fifty_a_page_and_keeps_the_filters(reviewer_client, llama_catalog):
    _bulk_requests(QUEUE_PAGE_SIZE + 5)

    first = reviewer_client.get(reverse("review-queue"))
    second = reviewer_client.get(reverse("review-queue"), {"page": 2, "assignee": "none"})

    assert len(_queue_references(first)) == QUEUE_PAGE_SIZE
    assert "Page 1 of 2" in _text(first)
    assert len(_queue_references(second)) == 5
    assert "?assignee=none&amp;page=1" in _text(second)


def _bulk_requests(count: int, *, start: int = 0, assignee=None) -> list[AccessRequest]:
    """Many requests fast, straight into the tables (not through the service): a
    mix of statuses, organizations, countries, models, flags and approvals."""
    variants = list(ModelVariant.objects.filter(slug__in=["llama-7b", "llama-13b", "llama-65b"]).order_by("position"))
    license_version = license_current(variants[0].family)
    applicants = User.objects.bulk_create(
        [User(email=f"bulk{start + index}@applicants.example.org") for index in range(max(1, min(count, 50)))]
    )
    organizations = OrganizationType.values
    countries = ["GB", "DE", "US", "FR", "JP", "BR"]
    now = timezone.now()
    requests = AccessRequest.objects.bulk_create(
        [
            AccessRequest(
                reference=f"AR-Q{start + index:07d}",
                applicant=applicants[index % len(applicants)],
                status=RequestStatus.IN_REVIEW if index % 3 == 0 else RequestStatus.SUBMITTED,
                full_name=f"Applicant {start + index}",
                affiliation=f"Institute {index % 40}",
                organization_type=organizations[index % len(organizations)],
                position="Researcher",
                country=countries[index % len(countries)],
                use_case="A research plan. " * 30,
                publications=["https://example.org/paper"],
                license=license_version,
                assignee=assignee if index % 4 == 0 else None,
                submitted_at=now - dt.timedelta(minutes=start + index),
            )
            for index in range(count)
        ],
        batch_size=1000,
    )
    wanted = []
    for index, access_request in enumerate(requests):
        wanted.append(RequestedVariant(request=access_request, variant=variants[index % len(variants)]))
        if index % 5 == 0:
            wanted.append(RequestedVariant(request=access_request, variant=variants[(index + 1) % len(variants)]))
    RequestedVariant.objects.bulk_create(wanted, batch_size=2000)
    ScreeningFlag.objects.bulk_create(
        [
            ScreeningFlag(request=r, code=ScreeningFlagCode.SHORT_USE_CASE, reason="Short.")
            for index, r in enumerate(requests)
            if index % 7 == 0
        ],
        batch_size=2000,
    )
    approvals = ReviewDecision.objects.bulk_create(
        [
            ReviewDecision(request=r, reviewer=assignee, kind=DecisionKind.APPROVE, review_round=1)
            for index, r in enumerate(requests)
            if index % 11 == 0 and assignee is not None
        ]
    )
    ReviewDecision.variants.through.objects.bulk_create(
        [ReviewDecision.variants.through(reviewdecision=d, modelvariant=variants[2]) for d in approvals]
    )
    return requests


def test_queue_runs_the_same_number_of_queries_with_10_and_10000_requests(reviewer_client, reviewer, llama_catalog):
    queue = reverse("review-queue")
    _bulk_requests(10, assignee=reviewer)
    reviewer_client.get(queue)  # warm caches (content types, permissions) outside the count

    with CaptureQueriesContext(connection) as few:
        small = reviewer_client.get(queue)
    _bulk_requests(9_990, start=10, assignee=reviewer)
    with CaptureQueriesContext(connection) as many:
        large = reviewer_client.get(queue)
    with CaptureQueriesContext(connection) as filtered:
        reviewer_client.get(queue, {"flag": "short_use_case", "assignee": "me", "page": 3})

    assert small.status_code == large.status_code == 200
    assert len(_queue_references(small)) == 10
    assert len(_queue_references(large)) == QUEUE_PAGE_SIZE
    assert len(many) == len(few), "\n".join(q["sql"][:200] for q in many.captured_queries)
    assert len(filtered) == len(few)


def test_approvals_annotation_agrees_with_the_service(
    reviewer, second_reviewer, researcher, outsider, llama_catalog, submit
):
    both = submit(researcher, "llama-7b", "llama-65b")
    access_request_approve(access_request=both, reviewer=reviewer)
    untouched = submit(outsider, "llama-65b", full_name="Eve Example", affiliation="Elsewhere Lab")
    simple = submit(UserFactory(), "llama-13b", full_name="Sim Ple", affiliation="Simple Lab")
    done = submit(UserFactory(), "llama-7b", full_name="Don E", affiliation="Done Lab")
    access_request_approve(access_request=done, reviewer=reviewer)

    rows = review_requests_annotate_approvals(
        AccessRequest.objects.filter(pk__in=[both.pk, untouched.pk, simple.pk, done.pk]).prefetch_related(
            "requested_variants__variant"
        )
    )

    for row in rows:
        assert row.approvals_still_needed == approvals_needed(row), row.reference
    assert {row.reference: row.approvals_still_needed for row in rows} == {
        both.reference: 1,
        untouched.reference: 2,
        simple.reference: 1,
        done.reference: 0,
    }


# --- Bulk decisions ---------------------------------------------------------------------


def test_bulk_approve_approves_the_ticked_requests_and_creates_grants(
    reviewer_client, researcher, outsider, llama_catalog, submit
):
    first = submit(researcher, "llama-7b")
    second = submit(outsider, "llama-13b", full_name="Eve Example", affiliation="Elsewhere Lab")
    untouched = submit(UserFactory(), "llama-7b", full_name="Una Touched", affiliation="Quiet Lab")

    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": [first.pk, second.pk], "decision": "approve", "query": "country=GB"}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("review-queue") + "?country=GB"
    assert _reload(first).status == RequestStatus.APPROVED
    assert _reload(second).status == RequestStatus.APPROVED
    assert _reload(untouched).status == RequestStatus.SUBMITTED
    assert Grant.objects.get(request=first).status == GrantStatus.LICENSE_REQUIRED
    assert _events(first, "access_request.approved").count() == 1
    page = _text(reviewer_client.get(response["Location"]))
    assert f"Approved 2 request(s): {first.reference}, {second.reference}." in page


def test_bulk_reject_gives_every_applicant_the_same_reason(
    reviewer_client, researcher, outsider, llama_catalog, submit
):
    first = submit(researcher, "llama-7b")
    second = submit(outsider, "llama-13b", full_name="Eve Example", affiliation="Elsewhere Lab")
    template = RejectionTemplate.objects.filter(is_active=True).first()

    reviewer_client.post(
        reverse("review-bulk"), {"requests": [first.pk, second.pk], "decision": "reject", "template": template.pk}
    )

    for access_request in (first, second):
        access_request = _reload(access_request)
        assert access_request.status == RequestStatus.REJECTED
        assert access_request.rejection_reason == template.text
        assert _events(access_request, "access_request.rejected").count() == 1


def test_bulk_reject_without_a_reason_changes_nothing(reviewer_client, pending):
    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": [pending.pk], "decision": "reject"}, follow=True
    )

    assert _reload(pending).status == RequestStatus.SUBMITTED
    assert "Give the reason for the rejection" in _text(response)


def test_bulk_reports_each_request_that_could_not_be_decided(
    reviewer_client, reviewer, researcher, llama_catalog, submit
):
    own = submit(reviewer, "llama-7b", full_name="Rita Reviewer", affiliation="Lab")
    decided = submit(researcher, "llama-13b")
    access_request_reject(access_request=decided, reviewer=UserFactory(role=roles.REVIEWER), reason="Out of scope.")
    fine = submit(UserFactory(), "llama-7b", full_name="Fin E", affiliation="Fine Lab")

    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": [own.pk, decided.pk, fine.pk], "decision": "approve"}, follow=True
    )

    page = _text(response)
    assert f"{own.reference} was not changed: You cannot review your own request" in page
    assert f"{decided.reference} was not changed: {decided.reference} is already rejected." in page
    assert f"Approved 1 request(s): {fine.reference}." in page
    assert _reload(own).status == RequestStatus.SUBMITTED
    assert _reload(fine).status == RequestStatus.APPROVED


def test_bulk_approval_of_a_two_person_request_waits_for_a_second_reviewer(reviewer_client, pending_65b):
    response = reviewer_client.post(
        reverse("review-bulk"), {"requests": [pending_65b.pk], "decision": "approve"}, follow=True
    )

    assert _reload(pending_65b).status == RequestStatus.IN_REVIEW
    assert f"Your approval is recorded for {pending_65b.reference}" in _text(response)
    assert not Grant.objects.filter(request=pending_65b).exists()


def test_bulk_without_ticked_requests_says_so(reviewer_client, pending):
    response = reviewer_client.post(reverse("review-bulk"), {"decision": "approve"}, follow=True)

    assert "Tick at least one request." in _text(response)
    assert _reload(pending).status == RequestStatus.SUBMITTED


# --- One request ------------------------------------------------------------------------


def test_detail_page_shows_the_whole_application_and_what_reviewers_know(
    reviewer_client, reviewer, researcher, llama_catalog, submit
):
    earlier = submit(researcher, "llama-33b")
    access_request_reject(access_request=earlier, reviewer=UserFactory(role=roles.REVIEWER), reason="Too vague.")
    grant_create(
        user=researcher, variant=ModelVariant.objects.get(slug="llama-13b"), actor=reviewer, reason="Co-author."
    )
    access_request = submit(
        researcher, "llama-7b", publications=["https://scholar.example.org/ada", "https://orcid.org/0000-0002"],
        use_case="Short but valid. " * 10,
    )  # fmt: skip
    ReviewNote.objects.create(request=access_request, author=reviewer, text="Checked the lab's website.")
    # Accepted under a lower minimum than today's: flagged short on resubmission.
    ScreeningFlag.objects.create(
        request=access_request, code=ScreeningFlagCode.SHORT_USE_CASE, reason="The use case has 170 characters."
    )

    response = reviewer_client.get(reverse("review-detail", args=[access_request.pk]))

    assert response.status_code == 200
    page = _text(response)
    for expected in ("Ada Lovelace", "University of Example", "Academic", "Postdoctoral researcher", "United Kingdom"):
        assert expected in page
    assert '<a href="https://orcid.org/0000-0002" rel="noopener noreferrer nofollow"' in page
    assert "Use case is short" in page and "The use case has" in page  # flag with its reason
    assert earlier.reference in page and "Rejected" in page  # the applicant's other requests
    assert "LLaMA 13B" in page  # and their grants
    assert "Checked the lab&#x27;s website." in page
    # The whole history, in words: no action codes or Python values.
    assert "Submitted by ada@uni.example.edu for LLaMA 7B" in page and "access_request.submitted" not in page
    assert 'data-testid="approve-form"' in page


def test_detail_page_of_an_unknown_request_is_404(reviewer_client, llama_catalog):
    assert reviewer_client.get(reverse("review-detail", args=[999_999])).status_code == 404


def test_note_is_added_for_reviewers_only_and_audited(reviewer_client, reviewer, pending):
    response = reviewer_client.post(reverse("review-note", args=[pending.pk]), {"text": "  Lab looks real.  "})

    assert response.status_code == 302
    assert response["Location"] == reverse("review-detail", args=[pending.pk]) + "#notes"
    note = ReviewNote.objects.get(request=pending)
    assert (note.author, note.text) == (reviewer, "Lab looks real.")
    assert _events(pending, "access_request.note_added").count() == 1
    assert "Lab looks real." in _text(reviewer_client.get(response["Location"]))


def test_empty_note_is_refused_with_a_message(reviewer_client, pending):
    response = reviewer_client.post(reverse("review-note", args=[pending.pk]), {"text": "   "})

    assert response.status_code == 400
    assert "Write the note first." in _text(response)
    assert not ReviewNote.objects.exists()


def test_claiming_takes_the_request_into_review(reviewer_client, reviewer, pending):
    response = reviewer_client.post(reverse("review-claim", args=[pending.pk]))

    assert response.status_code == 302
    pending = _reload(pending)
    assert (pending.status, pending.assignee) == (RequestStatus.IN_REVIEW, reviewer)
    assert _events(pending, "access_request.assigned").count() == 1
    assert f"{pending.reference} is now assigned to you." in _text(reviewer_client.get(response["Location"]))


def test_claim_can_assign_another_reviewer_by_email(reviewer_client, second_reviewer, pending):
    reviewer_client.post(reverse("review-claim", args=[pending.pk]), {"assignee": second_reviewer.email.upper()})

    assert _reload(pending).assignee == second_reviewer


@pytest.mark.parametrize(
    ("assignee", "error"),
    [("nobody@nowhere.example", "No account has the email"), ("eve@elsewhere.example.com", "is not a reviewer")],
)
def test_claim_refuses_an_assignee_who_cannot_review(reviewer_client, outsider, pending, assignee, error):
    response = reviewer_client.post(reverse("review-claim", args=[pending.pk]), {"assignee": assignee})

    assert response.status_code == 400
    assert error in _text(response)
    assert _reload(pending).assignee is None


def test_approving_every_model_grants_them(reviewer_client, researcher, pending):
    response = reviewer_client.post(
        reverse("review-decision", args=[pending.pk]), {"decision": "approve", "variants": ["llama-7b", "llama-13b"]}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("review-detail", args=[pending.pk])
    assert _reload(pending).status == RequestStatus.APPROVED
    assert dict(Grant.objects.filter(user=researcher).values_list("variant__slug", "status")) == {
        "llama-7b": GrantStatus.LICENSE_REQUIRED,
        "llama-13b": GrantStatus.LICENSE_REQUIRED,
    }
    assert _events(pending, "access_request.approved").count() == 1
    assert "is approved" in _text(reviewer_client.get(response["Location"]))


def test_approving_a_subset_declines_the_rest_and_sets_the_end_date(reviewer_client, researcher, pending):
    end = timezone.localdate() + dt.timedelta(days=90)

    reviewer_client.post(
        reverse("review-decision", args=[pending.pk]),
        {"decision": "approve", "variants": ["llama-13b"], "expires_on": end.isoformat()},
    )

    decisions = dict(pending.requested_variants.values_list("variant__slug", "decision"))
    assert decisions == {"llama-7b": VariantDecision.DECLINED, "llama-13b": VariantDecision.APPROVED}
    grant = Grant.objects.get(user=researcher)
    assert grant.variant.slug == "llama-13b"
    assert timezone.localtime(grant.expires_at).date() == end + dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"decision": "approve"}, "Tick at least one model"),
        ({"decision": "approve", "variants": ["llama-65b"]}, "Select a valid choice"),
        ({"decision": "approve", "variants": ["llama-7b"], "expires_on": "2001-01-01"}, "Choose today or a later date"),
        ({"decision": "reject", "reason": "   "}, "Pick a template or write the reason"),
        ({"decision": "request_info"}, "Say what information you need"),
        ({"decision": "maybe"}, "Select a valid choice"),
    ],
)
def test_a_decision_with_bad_input_changes_nothing_and_says_why(reviewer_client, pending, data, error):
    response = reviewer_client.post(reverse("review-decision", args=[pending.pk]), data)

    assert response.status_code == 400
    assert error in _text(response)
    assert _reload(pending).status == RequestStatus.SUBMITTED
    assert not ReviewDecision.objects.filter(request=pending).exists()


def test_rejecting_with_a_template_shows_its_text_to_the_applicant(reviewer_client, researcher, pending):
    template = RejectionTemplate.objects.filter(is_active=True).first()

    reviewer_client.post(reverse("review-decision", args=[pending.pk]), {"decision": "reject", "template": template.pk})

    pending = _reload(pending)
    assert pending.status == RequestStatus.REJECTED
    assert pending.rejection_reason == template.text
    assert pending.messages.get(kind=MessageKind.DECISION).text == template.text
    assert _events(pending, "access_request.rejected").count() == 1


def test_a_written_reason_wins_over_the_template(reviewer_client, pending):
    template = RejectionTemplate.objects.filter(is_active=True).first()

    reviewer_client.post(
        reverse("review-decision", args=[pending.pk]),
        {"decision": "reject", "template": template.pk, "reason": "We could not verify your affiliation."},
    )

    assert _reload(pending).rejection_reason == "We could not verify your affiliation."


def test_inactive_rejection_templates_are_not_offered(reviewer_client, pending):
    retired = RejectionTemplate.objects.create(title="Retired reason", text="Old text.", is_active=False)

    page = _text(reviewer_client.get(reverse("review-detail", args=[pending.pk])))
    response = reviewer_client.post(
        reverse("review-decision", args=[pending.pk]), {"decision": "reject", "template": retired.pk}
    )

    assert "Retired reason" not in page
    assert response.status_code == 400
    assert _reload(pending).status == RequestStatus.SUBMITTED


def test_asking_for_more_information_messages_the_applicant(
    reviewer_client, pending, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(
            reverse("review-decision", args=[pending.pk]),
            {"decision": "request_info", "message": "Which cluster will hold the weights?"},
        )

    assert response.status_code == 302
    pending = _reload(pending)
    assert pending.status == RequestStatus.INFO_REQUESTED
    assert pending.messages.get(kind=MessageKind.INFO_REQUEST).text == "Which cluster will hold the weights?"
    assert _events(pending, "access_request.info_requested").count() == 1
    assert [m.to for m in mailoutbox] == [[pending.applicant.email]]
    page = _text(reviewer_client.get(response["Location"]))
    assert "Which cluster will hold the weights?" in page
    assert 'data-testid="request-info-form"' not in page  # the question is with the applicant now


def test_deciding_an_already_decided_request_is_a_conflict(reviewer_client, pending):
    access_request_reject(access_request=pending, reviewer=UserFactory(role=roles.REVIEWER), reason="Out of scope.")

    response = reviewer_client.post(
        reverse("review-decision", args=[pending.pk]), {"decision": "approve", "variants": ["llama-7b"]}
    )

    assert response.status_code == 400  # nothing is pending any more: no model can be ticked
    assert _reload(pending).status == RequestStatus.REJECTED
    response = reviewer_client.post(
        reverse("review-decision", args=[pending.pk]), {"decision": "reject", "reason": "x"}
    )
    assert response.status_code == 409
    assert "is already rejected" in _text(response)


# --- The two-person rule and one's own request ------------------------------------------


def test_approving_7b_and_65b_on_the_page_says_7b_is_granted_and_65b_waits(
    reviewer_client, researcher, llama_catalog, submit
):
    access_request = submit(researcher, "llama-7b", "llama-65b")

    response = reviewer_client.post(
        reverse("review-decision", args=[access_request.pk]),
        {"decision": "approve", "variants": ["llama-7b", "llama-65b"]},
        follow=True,
    )

    page = _text(response)
    assert (
        f"{access_request.reference}: LLaMA 7B granted; the applicant is asked to accept the license. "
        "LLaMA 65B waits for a second reviewer&#x27;s approval."
    ) in page
    assert Grant.objects.filter(user=researcher, variant__slug="llama-7b").exists()


def test_65b_stays_in_review_after_one_approval_and_is_approved_after_a_second_reviewers(
    reviewer_client, second_reviewer_client, reviewer, second_reviewer, researcher, pending_65b
):
    url = reverse("review-decision", args=[pending_65b.pk])
    detail = reverse("review-detail", args=[pending_65b.pk])
    assert "two-person rule: needs 2 reviewers" in _text(reviewer_client.get(detail))

    response = reviewer_client.post(url, {"decision": "approve", "variants": ["llama-65b"]}, follow=True)

    assert _reload(pending_65b).status == RequestStatus.IN_REVIEW
    assert not Grant.objects.filter(user=researcher).exists()
    page = _text(response)
    assert "Your approval of " in page and "LLaMA 65B waits for a second reviewer&#x27;s approval." in page
    assert f"1 of 2: {reviewer.email}" in page
    assert 'data-testid="second-approval-needed">1 more approval by a different reviewer needed' in page
    assert 'data-testid="you-approved"' in page
    assert _events(pending_65b, "access_request.approval_recorded").count() == 1

    again = reviewer_client.post(url, {"decision": "approve", "variants": ["llama-65b"]})
    assert again.status_code == 409
    assert "the two-person rule needs a different reviewer" in _text(again)
    assert _reload(pending_65b).status == RequestStatus.IN_REVIEW

    second_page = _text(second_reviewer_client.get(detail))
    assert 'data-testid="approve-form"' in second_page
    response = second_reviewer_client.post(url, {"decision": "approve", "variants": ["llama-65b"]})

    assert response.status_code == 302
    assert _reload(pending_65b).status == RequestStatus.APPROVED
    assert Grant.objects.get(user=researcher).variant.slug == "llama-65b"
    assert _events(pending_65b, "access_request.approved").count() == 1


def test_reviewer_cannot_decide_their_own_request(reviewer_client, reviewer, llama_catalog, submit):
    own = submit(reviewer, "llama-7b", full_name="Rita Reviewer", affiliation="Lab")
    detail = reverse("review-detail", args=[own.pk])

    detail_response = reviewer_client.get(detail)
    response = reviewer_client.post(
        reverse("review-decision", args=[own.pk]), {"decision": "approve", "variants": ["llama-7b"]}
    )

    # Their own request is closed to them as a reviewer: no notes, flags or decision form.
    assert detail_response.status_code == 403
    assert "This is your own request" in _text(detail_response)
    assert 'data-testid="approve-form"' not in _text(detail_response)
    assert response.status_code == 403
    assert own.reference not in _text(reviewer_client.get(reverse("review-queue")))
    assert _reload(own).status == RequestStatus.SUBMITTED
    assert not Grant.objects.filter(user=reviewer).exists()
    assert reviewer_client.post(reverse("review-claim", args=[own.pk])).status_code == 403
