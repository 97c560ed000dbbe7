"""Helpers the reports share: the clock, time windows and buckets, API cost of self-hosted calls, money as JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from tracer.models import Project, Span, Trace

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
# The workflow of a trace without a root span (a workflow is a trace's root span name).
NO_ROOT = "(no root span)"


def utc_now() -> datetime:
    """The reports' clock. Services that depend on the date take `now=` and read this when it is
    not given; code without such a parameter (the budget banner on every page) reads it too, so a
    test sets the date by replacing this one function (monkeypatch `reports.common.utc_now`).
    Read it as `common.utc_now()`: a name imported from here would not see the replacement."""
    return timezone.now()


def started_in(queryset: QuerySet, *, start_ns: int | None, end_ns: int | None, field: str = "start_time_unix_nano"):
    """The rows of `queryset` that started in [start_ns, end_ns); None leaves that side open."""
    if start_ns is not None:
        queryset = queryset.filter(**{f"{field}__gte": start_ns})
    if end_ns is not None:
        queryset = queryset.filter(**{f"{field}__lt": end_ns})
    return queryset


def workflow_names(*, project: Project, start_ns: int | None, end_ns: int | None, limit: int = 200) -> list[str]:
    """The workflows of the traces that started in [start_ns, end_ns), by name (the pages' pickers)."""
    traces = started_in(Trace.objects.filter(project=project), start_ns=start_ns, end_ns=end_ns)
    names = traces.values_list("root_span_name", flat=True).distinct().order_by("root_span_name")[:limit]
    return [name or NO_ROOT for name in names]


def traces_scoped(
    *, project: Project, start_ns: int | None, end_ns: int | None, workflow: str = "", trace_id: str = ""
) -> QuerySet[Trace]:
    """What a report covers: one trace (`trace_id`, whenever it started), else the traces that
    started in [start_ns, end_ns), narrowed to one workflow when one is named."""
    traces = Trace.objects.filter(project=project)
    if trace_id:
        return traces.filter(trace_id=trace_id.lower())
    traces = started_in(traces, start_ns=start_ns, end_ns=end_ns)
    if workflow:
        return traces.filter(root_span_name="" if workflow == NO_ROOT else workflow)
    return traces


def self_hosted_api_cost(*, project: Project, traces: QuerySet[Trace]) -> dict[str, Decimal]:
    """trace_id -> the API price of its billed calls that were served by our own GPUs (they carry a
    GPU cost). Those calls cost their GPU time, not the API price: money counts one or the other."""
    served = Span.objects.filter(
        project=project, billed=True, gpu_cost__isnull=False, cost__isnull=False, trace_id__in=traces.values("trace_id")
    )
    return dict(served.values("trace_id").annotate(api=Sum("cost")).values_list("trace_id", "api").order_by())


def day_of(ns: int) -> date:
    # Integer seconds: a float would round the last instant of a day into the next one.
    return datetime.fromtimestamp(ns // NS_PER_SECOND, tz=UTC).date()


def week_of(ns: int) -> date:
    """The Monday (UTC) of the ISO week holding this instant."""
    day = day_of(ns)
    return day - timedelta(days=day.weekday())


def iso(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // NS_PER_SECOND, tz=UTC)
    return moment.replace(microsecond=(ns % NS_PER_SECOND) // 1000).isoformat().replace("+00:00", "Z")


def date_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS_PER_SECOND


def add(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    """Sum of money where None means "nothing priced yet" (never read as $0)."""
    if value is None:
        return total
    return value if total is None else total + value


def money(value: Decimal | None) -> str | None:
    """Decimal -> JSON (a string, so nothing is rounded through a float)."""
    return None if value is None else str(value)


def unmoney(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
