"""CSV exports, streamed: rows are read from the database in chunks and written out as they come,
so an export of any size runs in constant memory (bench/export_memory.py measures it).

The numbers are the pages' numbers:
- traces: the traces the caller filtered (as the Traces page or list API does), one row each with
  its stored rollups (sums over billed spans);
- spans: every span of those traces with its normalized fields, tokens and cost;
- agents / models: the Agents and Models pages' own tables (reports/usage.py) over the
  billed calls that started in the time range;
- daily: the billed calls of the time range summed per UTC day of the call, as the Overview's
  cost charts bucket them (budgets count spend the same way).

Cells are guarded against formula injection: a text value starting with =, +, -, @ (or a tab or
carriage return, which some spreadsheets skip before reading a formula) is prefixed with a single
quote, so a spreadsheet shows it as text instead of running it.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.fields import BigIntegerField

from reports import usage
from reports.common import NS_PER_DAY, day_of, iso, started_in
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


def export_rows(
    *,
    kind: str,
    project: Project,
    traces: QuerySet[Trace],
    start_ns: int | None = None,
    end_ns: int | None = None,
    sort: str = "",
) -> Iterator[list[Any]]:
    """The header then the rows of one export.

    traces and spans export `traces` (the caller's filtered queryset of this project's traces);
    agents, models and daily cover the billed calls that started in [start_ns, end_ns), as the
    Agents, Models and Overview pages do. `sort` is the agents/models pages' sort parameter.

    Raises UnknownExport, or tracer.api.BadParameter (a bad sort), before it returns: the header
    is made at once, so a caller answers a 400 instead of failing in the middle of a stream."""
    if kind not in KINDS:
        raise UnknownExport(f"unknown export {kind!r}: use one of {', '.join(KINDS)}")
    rows = _EXPORTS[kind](project, traces, start_ns, end_ns, sort)
    header = next(rows)
    return itertools.chain([header], rows)


def export_filename(*, kind: str, project: Project, label: str = "") -> str:
    suffix = "-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in label) if label else ""
    return f"{project.slug}-{kind}{suffix}.csv"


def _trace_rows(
    project: Project, traces: QuerySet[Trace], start_ns: int | None, end_ns: int | None, sort: str
) -> Iterator[list[Any]]:
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
        "gpu_cost",
        "billed_count",
        "no_usage_count",
        "incomplete",
        "missing_parents",
        "framework",
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
        "gpu_cost_usd",
        "billed_calls",
        "calls_without_usage",
        "incomplete",
        "missing_parents",
        "framework",
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


def _span_rows(
    project: Project, traces: QuerySet[Trace], start_ns: int | None, end_ns: int | None, sort: str
) -> Iterator[list[Any]]:
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
        "gpu_cost_usd",
    ]
    # Ordered by the unique constraint's index (project, trace_id, span_id): the database streams
    # it without a sort, however many spans there are.
    rows = _spans_of(project, traces).order_by("trace_id", "span_id").values_list(*SPAN_FIELDS, "gpu_cost")
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


def _summary_rows(rows: list[dict[str, Any]], head: list[str], keys: list[str]) -> Iterator[list[Any]]:
    yield [
        *head,
        "runs" if "runs" in keys else None,
        "calls",
        "traces",
        *TOKEN_FIELDS,
        "cost_usd",
        "unpriced_calls",
        "cost_per_call_usd",
        "cost_per_trace_usd",
        "avg_duration_ms",
        "errors" if "errors" in keys else None,
    ]
    for row in rows:
        avg = row.get("avg_duration_ns")
        yield [
            *(row[k] for k in keys if k not in ("runs", "errors")),
            row.get("runs"),
            row["calls"],
            row["traces"],
            *(row[name] for name in TOKEN_FIELDS),
            row["cost"],
            row["unpriced"],
            row["cost_per_call"],
            row["cost_per_trace"],
            None if avg is None else round(float(avg) / 1e6, 3),
            row.get("errors"),
        ]


def _strip(rows: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """Drop the columns whose header is None (runs and errors exist for agents only)."""
    header = next(rows)
    keep = [i for i, name in enumerate(header) if name is not None]
    yield [header[i] for i in keep]
    for row in rows:
        yield [row[i] for i in keep]


def _agent_rows(
    project: Project, traces: QuerySet[Trace], start_ns: int | None, end_ns: int | None, sort: str
) -> Iterator[list[Any]]:
    # The Agents page's own table, so the export has the page's numbers exactly.
    rows = usage.agents_table(project=project, start_ns=start_ns, end_ns=end_ns, sort=sort or "-cost")
    return _strip(_summary_rows(rows, ["agent"], ["agent", "runs", "errors"]))


def _model_rows(
    project: Project, traces: QuerySet[Trace], start_ns: int | None, end_ns: int | None, sort: str
) -> Iterator[list[Any]]:
    rows = usage.models_table(project=project, start_ns=start_ns, end_ns=end_ns, sort=sort or "-cost")
    return _strip(_summary_rows(rows, ["model", "provider"], ["model", "provider"]))


def daily_totals(*, project: Project, start_ns: int | None, end_ns: int | None) -> QuerySet:
    """Billed calls that started in [start_ns, end_ns) summed per UTC day of the call (`day` is
    days since 1970), as the Overview's cost charts bucket them; budgets count spend the same way."""
    day = F("start_time_unix_nano") / Value(NS_PER_DAY, output_field=BigIntegerField())
    billed = started_in(Span.objects.filter(project=project, billed=True), start_ns=start_ns, end_ns=end_ns)
    return (
        billed.annotate(day=day)
        .values("day")
        .annotate(
            calls=Count("pk"),
            traces=Count("trace_id", distinct=True),
            **{f"sum_{name}": Sum(name, default=0) for name in TOKEN_FIELDS},
            sum_cost=Sum("cost"),
            unpriced_calls=Count("pk", filter=Q(cost__isnull=True)),
            sum_gpu_cost=Sum("gpu_cost"),
        )
        .order_by("day")
    )


def _daily_rows(
    project: Project, traces: QuerySet[Trace], start_ns: int | None, end_ns: int | None, sort: str
) -> Iterator[list[Any]]:
    yield ["day", "calls", "traces", *TOKEN_FIELDS, "cost_usd", "unpriced_calls", "gpu_cost_usd"]
    for row in daily_totals(project=project, start_ns=start_ns, end_ns=end_ns):
        yield [
            day_of(row["day"] * NS_PER_DAY).isoformat(),
            row["calls"],
            row["traces"],
            *(row[f"sum_{name}"] for name in TOKEN_FIELDS),
            row["sum_cost"],
            row["unpriced_calls"],
            row["sum_gpu_cost"],
        ]


_EXPORTS = {
    "traces": _trace_rows,
    "spans": _span_rows,
    "agents": _agent_rows,
    "models": _model_rows,
    "daily": _daily_rows,
}
