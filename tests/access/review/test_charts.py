"""The charts of the statistics page (``access.review.charts``): the axis of the median chart and
the labels of durations."""

import datetime as dt

import pytest

from access.review.charts import duration_label, median_chart
from access.review.stats import DecisionTimes, WeekMedian


def _times(*medians):
    weeks = [
        WeekMedian(week=dt.date(2026, 11, 2) + dt.timedelta(weeks=i), decided=1 if m else 0, median=m)
        for i, m in enumerate(medians)
    ]
    return DecisionTimes(median=None, decided=len(weeks), weeks=weeks)


@pytest.mark.parametrize(
    ("medians", "unit", "top"),
    [
        ((dt.timedelta(minutes=1), dt.timedelta(minutes=30)), "min", "50"),
        ((dt.timedelta(hours=5), None), "h", "5"),
        ((dt.timedelta(days=3), dt.timedelta(days=9)), "d", "10"),
    ],
)
def test_median_chart_axis_reads_in_a_unit_that_fits_the_data(medians, unit, top):
    chart = median_chart(_times(*medians))

    assert chart["unit"] == unit
    assert [tick["value"] for tick in chart["ticks"]][-1] == top
    assert all("e-" not in tick["value"] for tick in chart["ticks"])


def test_weeks_without_decisions_are_not_drawn():
    chart = median_chart(_times(None, dt.timedelta(hours=3), None))

    assert len(chart["points"]) == 3
    assert len(chart["drawn"]) == 1


@pytest.mark.parametrize(
    ("duration", "label"),
    [(dt.timedelta(seconds=50), "1 minute"), (dt.timedelta(minutes=7), "7 minutes"), (dt.timedelta(days=3), "3.0 days")],
)
def test_duration_labels_are_plural_only_when_needed(duration, label):
    assert duration_label(duration) == label


@pytest.mark.parametrize(
    ("duration", "label"),
    [
        (None, "—"),
        (dt.timedelta(minutes=20), "20 minutes"),
        (dt.timedelta(hours=5), "5.0 hours"),
        (dt.timedelta(hours=30), "30 hours"),
        (dt.timedelta(days=3, hours=12), "3.5 days"),
    ],
)
def test_durations_read_naturally(duration, label):
    assert duration_label(duration) == label
