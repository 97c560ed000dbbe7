"""CSV exports, streamed: rows are read from the database in chunks and written out as they come,
so an export of any size runs in constant memory (bench/export_memory.py measures it).

Every export takes the traces to export as a queryset, filtered by the caller exactly as the page
or API it comes from filters them, so the numbers are the page's numbers:
- traces: one row per trace, its stored rollups (sums over billed spans);
- spans: every span of those traces with its normalized fields, tokens and cost;
- agents / models: billed spans of those traces grouped by agent (nearest enclosing agent, as
  ingest attributes it) or by model;
- daily: the traces' rollups summed per UTC day of the trace's start.

Cells are guarded against formula injection: a text value starting with =, +, -, @ (or a tab or
carriage return, which some spreadsheets skip before reading a formula) is prefixed with a single
quote, so a spreadsheet shows it as text instead of running it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.fields import BigIntegerField
from django.db.models.functions import Coalesce

from dashboard.reports.common import NS_PER_DAY, day_of, has_gpu_cost, iso
from tracer.models import Project, Span, Trace
from tracer.tree import TOKEN_FIELDS

KINDS = ("traces", "spans", "agents", "models", "daily")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Rows fetched per database round trip; also the unit of output buffering.
CHUNK = 2000


class UnknownExport(ValueError):
    pass


def cell_guard(value: Any) -> Any:
    """A cell value a spreadsheet will not evaluate as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns what it was given (csv.writer into a generator)."""

    def write(self, value: str) -> str:
        return value


def csv_stream(rows: Iterable[Iterable[Any]]) -> Iterator[bytes]:
    """Encode rows as CSV (UTF-8, CRLF as RFC 4180 says), a chunk of rows per yielded piece."""
    writer = csv.writer(_Echo())
    buffer: list[str] = []
    for row in rows:
        buffer.append(writer.writerow([_cell(v) for v in row]))
        if len(buffer) >= CHUNK:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # Fixed-point: 1E-7 would read as text in a spreadsheet and lose the cost.
        return format(value, "f")
    return cell_guard(value)


def export_rows(*, kind: str, project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    """The header then the rows of one export. `traces` must already be filtered to `project`."""
    if kind not in KINDS:
        raise UnknownExport(f"unknown export {kind!r}: use one of {', '.join(KINDS)}")
    return _EXPORTS[kind](project, traces)


def export_filename(*, kind: str, project: Project, label: str = "") -> str:
    suffix = "-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in label) if label else ""
    return f"{project.slug}-{kind}{suffix}.csv"


def _gpu() -> tuple[str, ...]:
    return ("gpu_cost",) if has_gpu_cost() else ()


def _trace_rows(project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    gpu = _gpu()
    fields = (
        "trace_id",
        "root_span_name",
        "session_id",
        "service_name",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "status",
        "span_count",
        "error_count",
        *TOKEN_FIELDS,
        "cost",
        "unpriced_count",
        *gpu,
    )
    yield [
        "trace_id",
        "workflow",
        "session_id",
        "service_name",
        "start_time",
        "duration_ms",
        "status",
        "span_count",
        "error_count",
        *TOKEN_FIELDS,
        "cost_usd",
        "unpriced_calls",
        *(("gpu_cost_usd",) if gpu else ()),
    ]
    rows = traces.order_by("-start_time_unix_nano", "-pk").values_list(*fields)
    for row in rows.iterator(chunk_size=CHUNK):
        trace_id, name, session, service, start, end, *rest = row
        yield [trace_id, name, session, service, iso(start), (end - start) / 1e6, *rest]


SPAN_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "agent_name",
    "model",
    "provider",
    "session_id",
    "service_name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "billed",
    *TOKEN_FIELDS,
    "cost",
    "reported_cost",
)
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}


def _spans_of(project: Project, traces: QuerySet[Trace]) -> QuerySet[Span]:
    return Span.objects.filter(project=project, trace_id__in=traces.values("trace_id"))


def _span_rows(project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    gpu = _gpu()
    yield [
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "agent",
        "model",
        "provider",
        "session_id",
        "service_name",
        "start_time",
        "duration_ms",
        "status",
        "billed",
        *TOKEN_FIELDS,
        "cost_usd",
        "reported_cost_usd",
        *(("gpu_cost_usd",) if gpu else ()),
    ]
    # Ordered by the unique constraint's index (project, trace_id, span_id): the database streams
    # it without a sort, however many spans there are.
    rows = _spans_of(project, traces).order_by("trace_id", "span_id").values_list(*SPAN_FIELDS, *gpu)
    for row in rows.iterator(chunk_size=CHUNK):
        (trace_id, span_id, parent, name, kind, agent, model, provider, session, service, start, end, status) = row[:13]
        yield [
            trace_id,
            span_id,
            parent,
            name,
            kind,
            agent,
            model,
            provider,
            session,
            service,
            iso(start),
            (end - start) / 1e6,
            STATUS_NAMES.get(status, str(status)),
            *row[13:],
        ]


def summary_by(*, project: Project, traces: QuerySet[Trace], field: str) -> list[dict[str, Any]]:
    """Billed spans of these traces grouped by `field` (agent_name or model): calls, tokens, cost.

    `cost` is the sum of the priced calls (None when none is priced); `unpriced_calls` counts the
    billed calls without a price, so a partial sum is never mistaken for the whole. Ordered by
    cost, highest first. One row per agent or model: small whatever the number of spans."""
    gpu = {"sum_gpu_cost": Sum("gpu_cost")} if has_gpu_cost() else {}
    rows = (
        _spans_of(project, traces)
        .filter(billed=True)
        .values(field)
        .annotate(
            calls=Count("pk"),
            **{f"sum_{name}": Coalesce(Sum(name), 0) for name in TOKEN_FIELDS},
            sum_cost=Sum("cost"),
            unpriced_calls=Count("pk", filter=Q(cost__isnull=True)),
            **gpu,
        )
        .order_by(field)
    )
    out = [
        {
            field: row[field],
            "calls": row["calls"],
            **{name: row[f"sum_{name}"] for name in TOKEN_FIELDS},
            "cost": row["sum_cost"],
            "unpriced_calls": row["unpriced_calls"],
            "gpu_cost": row.get("sum_gpu_cost"),
        }
        for row in rows
    ]
    out.sort(key=lambda r: (r["cost"] is None, -(r["cost"] or 0)))
    return out


def _summary_rows(project: Project, traces: QuerySet[Trace], field: str, label: str) -> Iterator[list[Any]]:
    gpu = _gpu()
    yield [label, "calls", *TOKEN_FIELDS, "cost_usd", "unpriced_calls", *(("gpu_cost_usd",) if gpu else ())]
    for row in summary_by(project=project, traces=traces, field=field):
        yield [
            row[field],
            row["calls"],
            *(row[name] for name in TOKEN_FIELDS),
            row["cost"],
            row["unpriced_calls"],
            *(row["gpu_cost"] for _ in gpu),
        ]


def _agent_rows(project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    return _summary_rows(project, traces, "agent_name", "agent")


def _model_rows(project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    return _summary_rows(project, traces, "model", "model")


def daily_totals(*, traces: QuerySet[Trace]) -> QuerySet:
    """The traces' rollups summed per UTC day of the trace's start (`day` is days since 1970)."""
    gpu = {"sum_gpu_cost": Sum("gpu_cost")} if has_gpu_cost() else {}
    day = F("start_time_unix_nano") / Value(NS_PER_DAY, output_field=BigIntegerField())
    return (
        traces.annotate(day=day)
        .values("day")
        .annotate(
            traces=Count("pk"),
            errors=Count("pk", filter=Q(status="error")),
            **{f"sum_{name}": Sum(name) for name in TOKEN_FIELDS},
            sum_cost=Sum("cost"),
            unpriced_calls=Sum("unpriced_count"),
            **gpu,
        )
        .order_by("day")
    )


def _daily_rows(project: Project, traces: QuerySet[Trace]) -> Iterator[list[Any]]:
    gpu = _gpu()
    yield ["day", "traces", "errors", *TOKEN_FIELDS, "cost_usd", "unpriced_calls", *(("gpu_cost_usd",) if gpu else ())]
    for row in daily_totals(traces=traces):
        yield [
            day_of(row["day"] * NS_PER_DAY).isoformat(),
            row["traces"],
            row["errors"],
            *(row[f"sum_{name}"] for name in TOKEN_FIELDS),
            row["sum_cost"],
            row["unpriced_calls"],
            *(row["sum_gpu_cost"] for _ in gpu),
        ]


_EXPORTS = {
    "traces": _trace_rows,
    "spans": _span_rows,
    "agents": _agent_rows,
    "models": _model_rows,
    "daily": _daily_rows,
}
