"""The estimated decision date on little data and on plenty: a blend of the default pace and the
decisions of the window, so one decision never moves the estimate by weeks (issue 15, item 1)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from access.catalog.models import ModelVariant
from access.catalog.selectors import license_current
from access.requests.models import AccessRequest, RequestStatus
from access.requests.selectors import decision_estimate, decisions_per_day
from tests.factories import UserFactory

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def pace(settings):
    """The defaults: 5 decisions a day assumed, counting as 20 decisions, over 28 days."""
    settings.REVIEW_THROUGHPUT_WINDOW_DAYS = 28
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 5.0
    settings.REVIEW_ESTIMATE_PRIOR_DECISIONS = 20


@pytest.fixture
def decided(use_case_text):
    """decided(count): requests decided over the last days of the window, spread evenly."""

    def make(count: int, *, days=27) -> None:
        license_version = license_current(ModelVariant.objects.get(slug="llama-7b").family)
        applicant = UserFactory()
        AccessRequest.objects.bulk_create(
            AccessRequest(
                applicant=applicant,
                status=RequestStatus.APPROVED if n % 3 else RequestStatus.REJECTED,
                full_name=f"Past {n}",
                affiliation="Past University",
                organization_type="academic",
                position="Researcher",
                country="DE",
                use_case=use_case_text,
                license=license_version,
                submitted_at=NOW - dt.timedelta(days=days + 1),
                decided_at=NOW - dt.timedelta(days=days * (n + 1) / (count + 1)),
            )
            for n in range(count)
        )

    return make


@pytest.fixture
def queued(llama_catalog, submit):
    """queued(count): that many requests waiting, the last one returned (the longest wait)."""

    def make(count: int) -> AccessRequest:
        requests = [
            submit(UserFactory(), full_name=f"Applicant {n}", affiliation=f"Lab {n}", ip=None) for n in range(count)
        ]
        AccessRequest.objects.filter(pk__in=[r.pk for r in requests]).update(submitted_at=NOW - dt.timedelta(hours=1))
        return AccessRequest.objects.get(pk=requests[-1].pk)

    return make


def test_with_no_decisions_the_estimate_is_the_default_pace_and_says_so(pace, queued):
    last = queued(10)

    estimate = decision_estimate(last, now=NOW)

    assert estimate.days == 2  # 10 in the queue at 5 a day
    assert estimate.at == NOW + dt.timedelta(days=2)
    assert estimate.basis == (
        "Based on the pace our reviewers aim for, as there have been few decisions so far "
        "(0 decisions in the last 28 days)."
    )


def test_one_decision_moves_the_estimate_by_a_day_at_most_not_by_weeks(pace, decided, queued):
    last = queued(10)
    before = decision_estimate(last, now=NOW)

    decided(1)
    after = decision_estimate(last, now=NOW)

    # Count over window alone would be 1/28 a day: 280 days for ten requests.
    assert 0 <= after.days - before.days <= 1
    assert after.days == 3
    assert "1 decision in the last 28 days" in after.basis


def test_five_decisions_still_lean_on_the_default_pace(pace, decided, queued):
    last = queued(10)
    decided(5)

    estimate = decision_estimate(last, now=NOW)

    # (5 × 5/28 + 20 × 5) / 25 ≈ 4.04 a day: three days, not the 56 that 5 in 28 days would give.
    assert estimate.days == 3
    assert not estimate.from_history
    assert "few decisions so far (5 decisions in the last 28 days)" in estimate.basis


def test_five_hundred_decisions_make_the_estimate_follow_the_history(pace, decided, queued):
    last = queued(40)
    decided(500)

    estimate = decision_estimate(last, now=NOW)

    # 500 in 28 days is about 17.9 a day, blended with 5 a day weighing as 20 decisions: ≈ 17.4.
    assert decisions_per_day(now=NOW) == pytest.approx((500 * 500 / 28 + 20 * 5) / 520)
    assert estimate.days == 3  # 40 / 17.4, rounded up
    assert estimate.from_history
    assert estimate.basis == "Based on 500 decisions in the last 28 days."


@pytest.mark.parametrize(("count", "days"), [(0, 2), (1, 3), (5, 3), (500, 1)])
def test_ten_in_the_queue_wait_days_never_weeks_whatever_the_history(pace, decided, queued, count, days):
    last = queued(10)
    decided(count)

    assert decision_estimate(last, now=NOW).days == days


def test_decisions_outside_the_window_do_not_count(pace, decided, queued):
    last = queued(10)
    decided(30, days=60)  # spread over 60 days: only about half fall in the window

    estimate = decision_estimate(last, now=NOW)

    assert 10 <= estimate.decisions <= 16


def test_the_api_and_the_page_give_the_estimate_with_its_basis(
    pace, llama_catalog, researcher, researcher_api, submit, client, login_with_password
):
    access_request = submit(researcher)

    body = researcher_api.get(f"/api/v1/access-requests/{access_request.pk}").json()
    estimate = decision_estimate(access_request)
    assert dt.datetime.fromisoformat(body["estimated_decision_at"]).date() == estimate.at.date()
    assert body["estimated_days"] == 1
    assert body["estimate_basis"].startswith("Based on the pace our reviewers aim for")

    login_with_password(client, researcher)
    page = client.get(f"/requests/{access_request.pk}/").content.decode()
    assert "That is in about 1 day. Based on the pace our reviewers aim for" in page
    assert "in about 1 day (by " in page


def test_a_decided_request_has_no_estimate(pace, llama_catalog, researcher, researcher_api, reviewer, submit):
    from access.review.services import access_request_approve

    access_request = access_request_approve(access_request=submit(researcher), reviewer=reviewer)

    body = researcher_api.get(f"/api/v1/access-requests/{access_request.pk}").json()
    assert (body["estimated_decision_at"], body["estimated_days"], body["estimate_basis"]) == (None, None, None)


def test_a_very_slow_default_pace_gives_a_far_date_not_an_error(settings, queued):
    settings.REVIEW_THROUGHPUT_WINDOW_DAYS = 28
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 0.01
    settings.REVIEW_ESTIMATE_PRIOR_DECISIONS = 20
    waiting = queued(3)

    estimate = decision_estimate(waiting, now=NOW)

    assert estimate.days == 300
    settings.REVIEW_DEFAULT_DECISIONS_PER_DAY = 0.0001  # below what the settings accept: capped all the same
    assert decision_estimate(waiting, now=NOW).days == 3650


@pytest.mark.parametrize(
    "variable, value",
    [
        ("REVIEW_THROUGHPUT_WINDOW_DAYS", "0"),
        ("REVIEW_DEFAULT_DECISIONS_PER_DAY", "0"),
        ("REVIEW_ESTIMATE_PRIOR_DECISIONS", "0"),
        ("SCREENING_SHORT_USE_CASE_CHARS", "400"),
    ],
)
def test_settings_that_would_break_the_estimate_or_are_gone_stop_the_portal_from_starting(variable, value):
    run = subprocess.run(
        [sys.executable, "-c", "import portal.settings"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and variable in run.stderr
