"""The review statistics' charts, as inline SVG geometry computed on the server
(the CSP allows no script); the template only places the shapes. Coordinates are
in the SVG's viewBox units."""

from __future__ import annotations

import datetime as dt

from access.review.stats import OUTCOME_LABELS, OUTCOMES

CHART_WIDTH, CHART_HEIGHT = 640, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 40, 10, 16, 30


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above value (an axis' top)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _ticks(top: float, plot_height: float) -> list[dict]:
    return [
        {"value": f"{round(top * share, 2):g}", "y": round(PAD_TOP + plot_height * (1 - share), 1)}
        for share in (0, 0.5, 1)
    ]


def _count_ticks(top: int, plot_height: float) -> list[dict]:
    """Ticks for a count of requests: whole numbers only (no "0.5 requests"). ``top`` is
    1, 2 or 5 x 10^k: halves from 10 up are whole; 1 and 5 get a tick at every whole number."""
    values = range(top + 1) if top <= 5 else (0, top // 2, top)
    return [{"value": str(value), "y": round(PAD_TOP + plot_height * (1 - value / top), 1)} for value in values]


def weekly_outcomes_chart(weeks) -> dict:
    plot_width = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
    plot_height = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    top = int(_nice_ceiling(max(week.total for week in weeks)))  # at least 1: counts are whole
    slot = plot_width / len(weeks)
    bar_width = slot * 0.68
    bars = []
    for index, week in enumerate(weeks):
        x = PAD_LEFT + index * slot + (slot - bar_width) / 2
        y = PAD_TOP + plot_height
        segments = []
        for outcome in OUTCOMES:
            count = week.counts[outcome]
            if not count:
                continue
            height = count / top * plot_height
            y -= height
            segments.append(
                {
                    "outcome": outcome,
                    "label": OUTCOME_LABELS[outcome],
                    "count": count,
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "width": round(bar_width, 1),
                    "height": round(height, 1),
                }
            )
        bars.append(
            {
                "week": week.week,
                "total": week.total,
                "segments": segments,
                "center": round(x + bar_width / 2, 1),
                "total_y": round(y - 4, 1),
            }
        )
    return {
        "bars": bars,
        "left": PAD_LEFT,
        "right": CHART_WIDTH - PAD_RIGHT,
        "ticks": _count_ticks(top, plot_height),
        "axis_y": PAD_TOP + plot_height,
        "label_y": CHART_HEIGHT - 10,
    }


RATE_ROW_HEIGHT, RATE_LABEL_WIDTH = 34, 170


def approval_rate_chart(rates) -> dict:
    bar_space = CHART_WIDTH - RATE_LABEL_WIDTH - 70
    rows = []
    for index, rate in enumerate(rates):
        y = 8 + index * RATE_ROW_HEIGHT
        width = round(bar_space * rate.rate, 1) if rate.rate is not None else 0
        rows.append(
            {
                "label": rate.label,
                "rate": rate,
                "percent": round(rate.rate * 100) if rate.rate is not None else None,
                "y": y,
                "text_y": y + 15,
                "bar_x": RATE_LABEL_WIDTH,
                "width": width,
                "track_width": bar_space,
                "value_x": RATE_LABEL_WIDTH + width + 6,
            }
        )
    return {"rows": rows, "height": 16 + len(rates) * RATE_ROW_HEIGHT, "label_x": RATE_LABEL_WIDTH - 8}


def duration_label(duration: dt.timedelta | None) -> str:
    if duration is None:
        return "—"
    hours = duration.total_seconds() / 3600
    if hours < 1:
        minutes = max(1, round(hours * 60))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if hours < 48:
        return f"{hours:.0f} hours" if hours >= 10 else f"{hours:.1f} hours"
    return f"{hours / 24:.1f} days"


MEDIAN_CHART_HEIGHT = 160
# The axis unit follows the data, so a fast queue reads "30 min", not "2e-05 d".
_MEDIAN_UNITS = [(86400, "d"), (3600, "h"), (60, "min")]


def _median_unit(longest_seconds: float) -> tuple[int, str]:
    for seconds, suffix in _MEDIAN_UNITS:
        if longest_seconds >= 2 * seconds:
            return seconds, suffix
    return _MEDIAN_UNITS[-1]


def median_chart(times) -> dict:
    plot_width = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
    plot_height = MEDIAN_CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    longest = max((week.median.total_seconds() for week in times.weeks if week.median), default=0)
    unit_seconds, unit = _median_unit(longest)
    values = [week.median.total_seconds() / unit_seconds if week.median else None for week in times.weeks]
    top = _nice_ceiling(max((v for v in values if v is not None), default=0))
    slot = plot_width / len(times.weeks)
    points = []
    for index, (week, value) in enumerate(zip(times.weeks, values, strict=True)):
        x = round(PAD_LEFT + slot * (index + 0.5), 1)
        point = {"week": week.week, "x": x, "decided": week.decided, "label": duration_label(week.median)}
        if value is not None:
            point["y"] = round(PAD_TOP + plot_height * (1 - value / top), 1)
        points.append(point)
    drawn = [p for p in points if "y" in p]
    return {
        "points": points,
        "drawn": drawn,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in drawn),
        "left": PAD_LEFT,
        "right": CHART_WIDTH - PAD_RIGHT,
        "ticks": _ticks(top, plot_height),
        "axis_y": PAD_TOP + plot_height,
        "label_y": MEDIAN_CHART_HEIGHT - 10,
        "height": MEDIAN_CHART_HEIGHT,
        "unit": unit,
    }
