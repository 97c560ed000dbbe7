"""The GPUs page (`/p/<slug>/gpus/`) and the GPU panel of a trace page (issue 6).

The reads are tracer/gpu/selectors.py; this module shapes them into plotly figure dicts (drawn by
static/dashboard/charts.js, no inline script; hover labels carry ids and numbers only, no text
from spans) and renders.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Max, Min
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from dashboard import charts
from dashboard.access import project_view
from dashboard.filters import TimeRange
from tracer.gpu import selectors
from tracer.gpu.intervals import NS
from tracer.models import GpuSample, Project, Trace

# How far around a trace its GPU chart reaches, so the load before and after shows.
TRACE_MARGIN_NS = 10 * NS


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _label(summary: selectors.DeviceSummary) -> str:
    return f"{summary.device.host} #{summary.device.index}"


def _lines(summaries: list[selectors.DeviceSummary], metric: str, *, title: str, unit: str, shapes: list) -> dict:
    data = []
    for s in summaries:
        values = [getattr(p, metric) for p in s.series]
        if metric == "memory_used_bytes":
            values = [None if v is None else v / 2**30 for v in values]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": _label(s),
                "x": [_iso(p.time_ns) for p in s.series],
                "y": values,
            }
        )
    layout = charts.layout(title=title, unit=unit, height=240, xaxis={"type": "date"})
    layout["yaxis"]["rangemode"] = "tozero"
    if shapes:
        layout["shapes"] = shapes
    return {"data": data, "layout": layout}


def _trace_shapes(traces: list[dict]) -> list[dict]:
    """A shaded band per active trace, behind the lines."""
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": _iso(t["start_time_unix_nano"]),
            "x1": _iso(max(t["end_time_unix_nano"], t["start_time_unix_nano"] + NS // 10)),
            "y0": 0,
            "y1": 1,
            "fillcolor": "rgba(230, 126, 34, 0.15)",
            "line": {"width": 0},
            "layer": "below",
        }
        for t in traces
    ]


def _window(time_range: TimeRange, project: Project) -> tuple[int, int]:
    """The range, narrowed to the raw samples in it so a short run fills the charts (rollups alone
    keep the whole range)."""
    end = time_range.end_ns if time_range.end_ns is not None else time.time_ns()
    start = time_range.start_ns if time_range.start_ns is not None else 0
    found = GpuSample.objects.filter(
        device__project=project, time_unix_nano__gte=start, time_unix_nano__lt=end
    ).aggregate(first=Min("time_unix_nano"), last=Max("time_unix_nano"))
    if found["first"] is None:
        return (start or end - 86400 * NS), end
    return found["first"], found["last"] + 1


def _sum_costs(costs: list[Decimal | None]) -> Decimal | None:
    return None if any(c is None for c in costs) else sum(costs, Decimal(0))


@project_view()
def gpus(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = TimeRange.from_request(request)
    start_ns, end_ns = _window(time_range, request.project)
    summaries = selectors.devices_summary(project=request.project, start_ns=start_ns, end_ns=end_ns)
    traces = selectors.active_traces(project=request.project, start_ns=start_ns, end_ns=end_ns)
    attributed = selectors.attributed_totals(project=request.project, start_ns=start_ns, end_ns=end_ns)
    sampled = [s for s in summaries if s.sampled_seconds]
    measured_cost = _sum_costs([s.cost for s in sampled]) if sampled else None
    idle_cost = None
    if measured_cost is not None and attributed["gpu_cost"] is not None:
        idle_cost = max(measured_cost - attributed["gpu_cost"], Decimal(0))
    shapes = _trace_shapes(traces)
    figures = {
        "utilization": _lines(summaries, "utilization_gpu", title="Utilization", unit="%", shapes=shapes),
        "memory": _lines(summaries, "memory_used_bytes", title="Memory used", unit="GiB", shapes=shapes),
        "power": _lines(summaries, "power_w", title="Power", unit="W", shapes=shapes),
    }
    context = {
        "page": "gpus",
        "time_range": time_range,
        "summaries": summaries,
        "attributed": attributed,
        "measured_cost": measured_cost,
        "idle_cost": idle_cost,
        "traces": traces,
        "figures": figures,
    }
    return render(request, "dashboard/gpus.html", context)


def trace_gpu_context(*, project: Project, trace: Trace) -> dict:
    """For the trace page: per-step GPU figures, and the utilization of the GPUs that served the
    trace during its window. Empty when no span of the trace was attributed GPU time."""
    if trace.gpu_seconds is None:
        return {}  # the common case costs the trace page no query
    steps = selectors.trace_gpu_steps(project=project, trace_id=trace.trace_id)
    if not steps:
        return {}
    devices = selectors.trace_devices(project=project, trace_id=trace.trace_id)
    start, end = trace.start_time_unix_nano - TRACE_MARGIN_NS, trace.end_time_unix_nano + TRACE_MARGIN_NS
    series = selectors.device_series(device_ids=[d.pk for d in devices], start_ns=start, end_ns=end)
    summaries = [selectors.DeviceSummary(device=d, price_per_hour=None, series=series[d.pk]) for d in devices]
    band = _trace_shapes(
        [{"start_time_unix_nano": trace.start_time_unix_nano, "end_time_unix_nano": trace.end_time_unix_nano}]
    )
    figure = _lines(summaries, "utilization_gpu", title="GPU utilization during this trace", unit="%", shapes=band)
    return {"gpu_steps": steps, "gpu_figure": figure}
