"""The statistics of the review (``access.review.stats``): requests per week by outcome, the
approval rate per organization type, the time to a decision; and the reviewers' statistics page
that draws them (``/review/stats/``)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse

from access.requests.models import AccessRequest, OrganizationType, RequestStatus
from access.review.services import access_request_approve, access_request_reject
from access.review.stats import (
    approval_rate_by_organization_type,
    requests_per_week_by_outcome,
    time_to_decision,
    week_start,
)
from portal import roles
from tests.factories import UserFactory

NOW = dt.datetime(2024, 5, 15, 12, 0, tzinfo=dt.UTC)  # a Wednesday


def _reload(obj):
    return type(obj).objects.get(pk=obj.pk)


def _text(response) -> str:
    return response.content.decode()


def _aged(access_request, *, submitted_days_ago: float, decided_days_ago: float | None = None):
    fields = {"submitted_at": NOW - dt.timedelta(days=submitted_days_ago)}
    if decided_days_ago is not None:
        fields["decided_at"] = NOW - dt.timedelta(days=decided_days_ago)
    AccessRequest.objects.filter(pk=access_request.pk).update(**fields)
    return _reload(access_request)


@pytest.fixture
def history(reviewer, llama_catalog, submit):
    """Approved, rejected, withdrawn and open requests spread over three weeks."""
    other = UserFactory(role=roles.REVIEWER)

    def applicant(org="academic", name="A"):
        return submit(UserFactory(), "llama-7b", organization_type=org, full_name=name, affiliation=f"{name} Lab")

    approved = applicant(name="Approved")
    access_request_approve(access_request=approved, reviewer=other)
    rejected = applicant("industry_lab", name="Rejected")
    access_request_reject(access_request=rejected, reviewer=other, reason="No.")
    approved_industry = applicant("industry_lab", name="Approved Industry")
    access_request_approve(access_request=approved_industry, reviewer=other)
    withdrawn = applicant(name="Withdrawn")
    AccessRequest.objects.filter(pk=withdrawn.pk).update(status=RequestStatus.WITHDRAWN)
    still_open = applicant(name="Open")
    return {
        "approved": _aged(approved, submitted_days_ago=9, decided_days_ago=7),  # 2 days
        "rejected": _aged(rejected, submitted_days_ago=9, decided_days_ago=5),  # 4 days
        "approved_industry": _aged(approved_industry, submitted_days_ago=2, decided_days_ago=1),  # 1 day
        "withdrawn": _aged(withdrawn, submitted_days_ago=2),
        "open": _aged(still_open, submitted_days_ago=0.1),
        "too_old": _aged(applicant(name="Ancient"), submitted_days_ago=200),
    }


def test_requests_per_week_count_outcomes_by_week_of_submission(history):
    weeks = requests_per_week_by_outcome(now=NOW)

    assert len(weeks) == 12
    assert weeks[-1].week == dt.date(2024, 5, 13)
    assert [w.week for w in weeks] == sorted(w.week for w in weeks)
    assert weeks[-1].counts == {"approved": 1, "rejected": 0, "withdrawn": 1, "open": 1}
    assert weeks[-2].counts == {"approved": 1, "rejected": 1, "withdrawn": 0, "open": 0}
    assert sum(w.total for w in weeks) == 5  # the 200-day-old request is outside the window


def test_approval_rate_is_counted_per_organization_type_over_decided_requests(history):
    rates = {rate.organization_type: rate for rate in approval_rate_by_organization_type(now=NOW)}

    assert (rates["academic"].approved, rates["academic"].decided, rates["academic"].rate) == (1, 1, 1.0)
    assert (rates["industry_lab"].approved, rates["industry_lab"].rejected, rates["industry_lab"].rate) == (1, 1, 0.5)
    assert rates["government"].rate is None
    assert list(rates) == OrganizationType.values


def test_median_time_to_decision_overall_and_per_week(history):
    times = time_to_decision(now=NOW)

    assert times.decided == 3
    assert times.median == dt.timedelta(days=2)
    by_week = {week.week: week for week in times.weeks}
    assert by_week[dt.date(2024, 5, 13)].median == dt.timedelta(days=1)
    assert by_week[dt.date(2024, 5, 6)].median == dt.timedelta(days=3)  # 2 and 4 days
    assert by_week[dt.date(2024, 4, 29)].median is None


def test_statistics_of_an_empty_portal_are_empty(db):
    assert all(week.total == 0 for week in requests_per_week_by_outcome(now=NOW))
    assert all(rate.rate is None for rate in approval_rate_by_organization_type(now=NOW))
    assert time_to_decision(now=NOW).median is None


def test_week_starts_on_monday():
    assert week_start(dt.datetime(2024, 5, 19, 23, 59, tzinfo=dt.UTC)) == dt.date(2024, 5, 13)
    assert week_start(dt.datetime(2024, 5, 20, 0, 0, tzinfo=dt.UTC)) == dt.date(2024, 5, 20)


def test_statistics_page_draws_the_charts_as_inline_svg(reviewer_client, reviewer, researcher, llama_catalog, submit):
    approved = submit(researcher, "llama-7b")
    access_request_approve(access_request=approved, reviewer=UserFactory(role=roles.REVIEWER))
    rejected = submit(UserFactory(), "llama-7b", organization_type="industry_lab", full_name="Ivy", affiliation="Ind")
    access_request_reject(access_request=rejected, reviewer=reviewer, reason="No.")
    submit(UserFactory(), "llama-13b", full_name="Olive Open", affiliation="Open Lab")

    response = reviewer_client.get(reverse("review-stats"))

    assert response.status_code == 200
    page = _text(response)
    # The CSP allows neither inline scripts nor style attributes: scripts only from files.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "style=" not in page
    assert page.count("<svg") == 3
    assert 'class="bar approved"' in page and 'class="bar rejected"' in page and 'class="bar open"' in page
    assert ">100% <tspan" in page and ">0% <tspan" in page  # academic and industry
    assert "3</strong> requests submitted" in page
    assert "50%</strong> approved of 2 decided" in page
    assert 'data-testid="no-data"' not in page


def test_statistics_page_with_no_requests_says_so(reviewer_client, llama_catalog):
    response = reviewer_client.get(reverse("review-stats"))

    assert response.status_code == 200
    page = _text(response)
    assert 'data-testid="no-data"' in page
    assert "No request was approved or rejected" in page
    assert "<svg" not in page
