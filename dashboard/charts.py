"""Plotly figures as plain dicts. The page embeds them with `json_script` and
static/dashboard/charts.js draws them: no inline script, no HTML from data."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal


def layout(*, title: str, unit: str, barmode: str = "stack", **extra) -> dict:
    """The dashboard's chart layout: compact, legend below, the unit on the y axis."""
    return {
        "margin": {"l": 60, "r": 10, "t": 30, "b": 40},
        "height": 260,
        "barmode": barmode,
        "legend": {"orientation": "h", "y": -0.2},
        "font": {"size": 11},
        "title": {"text": title},
        "yaxis": {"title": {"text": unit}},
        **extra,
    }


def bucket_label(bucket: int, bucket_ns: int) -> str:
    moment = datetime.fromtimestamp(bucket * bucket_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M") if bucket_ns < 86_400 * 10**9 else moment.strftime("%Y-%m-%d")


def stacked_bars(
    rows: Iterable[tuple[int, str, Decimal | int | None]], *, bucket_ns: int, title: str, unit: str
) -> dict:
    """rows of (time bucket, series name, value) -> a stacked bar chart over time, one trace per series."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    buckets: set[int] = set()
    for bucket, name, value in rows:
        buckets.add(bucket)
        series[name or "(none)"][bucket] = float(value or 0)
    x = [bucket_label(b, bucket_ns) for b in sorted(buckets)]
    data = [
        {"type": "bar", "name": name, "x": x, "y": [points.get(b, 0) for b in sorted(buckets)]}
        for name, points in sorted(series.items())
    ]
    return {"data": data, "layout": layout(title=title, unit=unit)}


def bars(
    labels: list[str], values_by_series: dict[str, list[float]], *, title: str, unit: str, barmode: str = "stack"
) -> dict:
    """Categorical bars (e.g. tokens by agent, one series per token kind), stacked or grouped."""
    data = [
        {"type": "bar", "name": name, "x": labels, "y": [float(v or 0) for v in values]}
        for name, values in values_by_series.items()
    ]
    return {"data": data, "layout": layout(title=title, unit=unit, barmode=barmode)}


def lines(x: list, series: dict[str, list], *, title: str, unit: str) -> dict:
    """One line with markers per series over a shared x axis (weeks, turns)."""
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": name or "(none)", "x": x, "y": ys}
        for name, ys in series.items()
    ]
    return {"data": data, "layout": layout(title=title, unit=unit)}
