"""Usage per agent and per model over a time window: the Agents and Models pages' tables and
their CSV exports (reports/exports.py) come from these functions, so both show the same numbers.

A call counts in the window when it started in [start_ns, end_ns) (None: open on that side);
money is Decimal, None where no call of the row is priced."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, F, Q, Sum

from reports.common import started_in
from tracer import tree
from tracer.api import BadParameter
from tracer.models import Project, Span

TOKEN_SUMS = {name: Sum(name, default=0) for name in tree.TOKEN_FIELDS}


def _per_call(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cost = row["cost"]
        row["cost_per_call"] = cost / row["calls"] if cost is not None and row["calls"] else None
        row["cost_per_trace"] = cost / row["traces"] if cost is not None and row["traces"] else None


def _sorted(rows: list[dict[str, Any]], sort: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    key = sort.lstrip("-")
    if key not in columns:
        raise BadParameter(f"sort={sort!r}: use one of {', '.join(columns)} (prefix - for descending)")
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    present.sort(key=lambda r: r[key], reverse=sort.startswith("-"))
    return present + missing


# Order matters: an annotation named like a field shadows it for the annotations after it, so
# "unpriced" reads the span's cost column before "cost" becomes the sum.
_USAGE = {
    "calls": Count("pk"),
    "traces": Count("trace_id", distinct=True),
    "unpriced": Count("pk", filter=Q(cost__isnull=True)),
    "cost": Sum("cost"),
    # What the calls' self-hosted GPUs spent (tracer/gpu/attribution.py); None where none reported.
    "gpu_cost": Sum("gpu_cost"),
    **TOKEN_SUMS,
}
AGENT_COLUMNS = (
    "agent",
    "runs",
    "calls",
    "traces",
    "total_tokens",
    "cost",
    "cost_per_call",
    "cost_per_trace",
    "avg_duration_ns",
    "errors",
)
MODEL_COLUMNS = (
    "model",
    "provider",
    "calls",
    "traces",
    "total_tokens",
    "cost",
    "cost_per_call",
    "cost_per_trace",
    "avg_duration_ns",
)


def agents_table(
    *, project: Project, start_ns: int | None, end_ns: int | None, sort: str = "-cost"
) -> list[dict[str, Any]]:
    """Per agent: its model calls (billed spans it encloses) and its runs (its own agent spans)."""
    billed = started_in(Span.objects.filter(project=project, billed=True), start_ns=start_ns, end_ns=end_ns)
    usage = {row["agent_name"]: row for row in billed.values("agent_name").annotate(**_USAGE).order_by()}
    runs = (
        started_in(Span.objects.filter(project=project, kind="agent"), start_ns=start_ns, end_ns=end_ns)
        .values("agent_name")
        .annotate(
            runs=Count("pk"),
            avg_duration_ns=Avg(F("end_time_unix_nano") - F("start_time_unix_nano")),
            errors=Count("pk", filter=Q(status_code=2)),
        )
        .order_by()
    )
    runs_by_agent = {row["agent_name"]: row for row in runs}
    rows = []
    for name in sorted(set(usage) | set(runs_by_agent)):
        row = {
            "agent": name,
            "runs": 0,
            "avg_duration_ns": None,
            "errors": 0,
            "calls": 0,
            "traces": 0,
            "cost": None,
            "unpriced": 0,
            **dict.fromkeys(tree.TOKEN_FIELDS, 0),
        }
        row.update(usage.get(name, {}))
        row.update(runs_by_agent.get(name, {}))
        row["agent"] = name
        rows.append(row)
    _per_call(rows)
    return _sorted(rows, sort, AGENT_COLUMNS)


def models_table(
    *, project: Project, start_ns: int | None, end_ns: int | None, sort: str = "-cost"
) -> list[dict[str, Any]]:
    billed = started_in(Span.objects.filter(project=project, billed=True), start_ns=start_ns, end_ns=end_ns)
    rows = list(
        billed.values("model", "provider")
        .annotate(**_USAGE, avg_duration_ns=Avg(F("end_time_unix_nano") - F("start_time_unix_nano")))
        .order_by()
    )
    _per_call(rows)
    return _sorted(rows, sort, MODEL_COLUMNS)
