"""Reads for the reviewers' statistics page: requests per week by outcome, approval
rate by organization type, time to decision. Each is a fixed number of queries;
the page draws them (see access.review.views)."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field

from django.db.models import Count
from django.db.models.functions import TruncWeek
from django.utils import timezone

from access.requests.models import AccessRequest, OrganizationType, RequestStatus

STATS_WEEKS = 12
# Where a request ended up; the order is the order of the stacked bars, bottom up.
OUTCOMES = ("approved", "rejected", "withdrawn", "open")
OUTCOME_LABELS = {"approved": "Approved", "rejected": "Rejected", "withdrawn": "Withdrawn", "open": "Still open"}
DECIDED_STATUSES = (RequestStatus.APPROVED, RequestStatus.REJECTED)


def _outcome(status: str) -> str:
    return status if status in ("approved", "rejected", "withdrawn") else "open"


def week_start(moment: dt.datetime) -> dt.date:
    """Monday of the moment's week, in the site's time zone (UTC)."""
    day = timezone.localtime(moment).date()
    return day - dt.timedelta(days=day.weekday())


def _window(weeks: int, now: dt.datetime | None) -> tuple[list[dt.date], dt.datetime]:
    """The Mondays of the last ``weeks`` weeks, this one included, and the first one's midnight."""
    now = now or timezone.now()
    last = week_start(now)
    mondays = [last - dt.timedelta(weeks=weeks - 1 - index) for index in range(weeks)]
    start = dt.datetime.combine(mondays[0], dt.time.min, tzinfo=timezone.get_current_timezone())
    return mondays, start


@dataclass
class WeekOutcomes:
    week: dt.date
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def requests_per_week_by_outcome(*, weeks: int = STATS_WEEKS, now: dt.datetime | None = None) -> list[WeekOutcomes]:
    """Requests by the week they were submitted, split by where they ended up;
    oldest week first, weeks without requests included with zeros."""
    mondays, start = _window(weeks, now)
    by_week = {monday: WeekOutcomes(week=monday) for monday in mondays}
    rows = (
        AccessRequest.objects.filter(submitted_at__gte=start)
        .annotate(week=TruncWeek("submitted_at"))
        .values_list("week", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for week, status, n in rows:
        monday = week.date() if isinstance(week, dt.datetime) else week
        if monday in by_week:
            by_week[monday].counts[_outcome(status)] += n
    return [by_week[monday] for monday in mondays]


@dataclass
class OrganizationRate:
    organization_type: str
    label: str
    approved: int
    rejected: int

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def rate(self) -> float | None:
        """Share of decided requests that were approved; None when none was decided."""
        return self.approved / self.decided if self.decided else None


def approval_rate_by_organization_type(
    *, weeks: int = STATS_WEEKS, now: dt.datetime | None = None
) -> list[OrganizationRate]:
    """Approved / (approved + rejected) per organization type, over requests decided
    in the window. Withdrawn and open requests are not counted."""
    _, start = _window(weeks, now)
    counts = {
        (org, status): n
        for org, status, n in AccessRequest.objects.filter(status__in=DECIDED_STATUSES, decided_at__gte=start)
        .values_list("organization_type", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    return [
        OrganizationRate(
            organization_type=value,
            label=label,
            approved=counts.get((value, RequestStatus.APPROVED), 0),
            rejected=counts.get((value, RequestStatus.REJECTED), 0),
        )
        for value, label in OrganizationType.choices
    ]


@dataclass
class WeekMedian:
    week: dt.date
    decided: int
    median: dt.timedelta | None


@dataclass
class DecisionTimes:
    median: dt.timedelta | None
    decided: int
    weeks: list[WeekMedian]


def _median(durations: list[float]) -> dt.timedelta | None:
    return dt.timedelta(seconds=statistics.median(durations)) if durations else None


def time_to_decision(*, weeks: int = STATS_WEEKS, now: dt.datetime | None = None) -> DecisionTimes:
    """Median time from submission to approval or rejection, over the window and
    per week of decision. Time spent waiting for the applicant's answers counts:
    it is how long the applicant waited."""
    mondays, start = _window(weeks, now)
    per_week: dict[dt.date, list[float]] = {monday: [] for monday in mondays}
    rows = AccessRequest.objects.filter(
        status__in=DECIDED_STATUSES, decided_at__gte=start, decided_at__isnull=False
    ).values_list("submitted_at", "decided_at")
    everything = []
    for submitted_at, decided_at in rows:
        seconds = max(0.0, (decided_at - submitted_at).total_seconds())
        everything.append(seconds)
        monday = week_start(decided_at)
        if monday in per_week:
            per_week[monday].append(seconds)
    return DecisionTimes(
        median=_median(everything),
        decided=len(everything),
        weeks=[
            WeekMedian(week=monday, decided=len(per_week[monday]), median=_median(per_week[monday]))
            for monday in mondays
        ],
    )
