"""Writing span rows and the rollups of the traces they touch, under per-trace locks.

Ingest (tracer/ingest.py) calls `traces_rollup` with a batch's new span rows; re-pricing
(tracer/pricing.py) calls it with none, to recompute the totals of traces whose costs changed. Both,
and GPU attribution (tracer/gpu/attribution.py), take the traces' advisory locks (`traces_lock`,
keyed by `trace_lock_key`) before they read a trace's spans, so two writers of one trace run one
after the other.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import orjson
from django.db import connection
from django.utils import timezone

from tracer import tree
from tracer.models import Span, Trace

# Columns written for every span, in COPY order: as received, then normalized (tracer/semconv.py).
RAW_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "span_kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "events",
    "links",
)
NORMALIZED_COLUMNS = (
    "kind",
    "agent_name",
    "model",
    "provider",
    "session_id",
    *tree.TOKEN_FIELDS,
    # Both need the whole trace: traces_rollup sets them before the span is written.
    "billed",
    "cost",
    "reported_cost",
)
SPAN_COLUMNS = RAW_COLUMNS + NORMALIZED_COLUMNS


# --- Writing spans -------------------------------------------------------------------------


_RESOURCE = SPAN_COLUMNS.index("resource_attributes")
_ATTRIBUTES = SPAN_COLUMNS.index("attributes")
_EVENTS = SPAN_COLUMNS.index("events")
_LINKS = SPAN_COLUMNS.index("links")


def spans_write(*, project_id: int, rows: list[list]) -> None:
    """Upsert spans: a span seen again replaces its row (replays pick up new normalization)."""
    if not rows:
        return
    # One global order for every writer, so overlapping batches never deadlock on row locks.
    rows.sort(key=lambda row: (row[0], row[1]))
    if connection.vendor == "postgresql":
        _spans_write_copy(project_id=project_id, rows=rows)
    else:
        _spans_write_orm(project_id=project_id, rows=rows)


def _spans_write_copy(*, project_id: int, rows: list[list]) -> None:
    """PostgreSQL: COPY into a session-temporary staging table, then one INSERT .. ON CONFLICT."""
    columns = ", ".join(("project_id", *SPAN_COLUMNS))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in SPAN_COLUMNS if c not in ("trace_id", "span_id"))
    resources: dict[int, str] = {}
    with connection.cursor() as cursor:
        # Created once per connection; ON COMMIT DELETE ROWS empties it after each batch.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS octotrace_span_stage ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM tracer_span WITH NO DATA"
        )
        # Empty it anyway: inside an outer transaction (a replay loop, a test) no commit came
        # between two batches, and old rows would be written again.
        cursor.execute("DELETE FROM octotrace_span_stage")
        with cursor.copy(f"COPY octotrace_span_stage ({columns}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                values = [project_id, *row]
                # Spans of one resource share its attributes dict: encode it once.
                resource = row[_RESOURCE]
                encoded = resources.get(id(resource))
                if encoded is None:
                    encoded = resources[id(resource)] = _jsonb(resource)
                values[_RESOURCE + 1] = encoded
                values[_ATTRIBUTES + 1] = _jsonb(row[_ATTRIBUTES])
                values[_EVENTS + 1] = _jsonb(row[_EVENTS]) if row[_EVENTS] else "[]"
                values[_LINKS + 1] = _jsonb(row[_LINKS]) if row[_LINKS] else "[]"
                write_row(values)
        cursor.execute(
            f"INSERT INTO tracer_span ({columns}) "
            f"SELECT {columns} FROM octotrace_span_stage ORDER BY trace_id, span_id "
            f"ON CONFLICT (project_id, trace_id, span_id) DO UPDATE SET {updates}"
        )


def _jsonb(value: object) -> str:
    """JSON text that PostgreSQL's jsonb accepts. orjson writes NaN/Infinity as null (jsonb has
    no such numbers) and is several times faster than json; jsonb rejects the NUL escape."""
    text = orjson.dumps(value).decode()
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _spans_write_orm(*, project_id: int, rows: list[list]) -> None:
    """SQLite (the embedded mode): bulk_create with update_conflicts."""
    Span.objects.bulk_create(
        [Span(project_id=project_id, **dict(zip(SPAN_COLUMNS, row, strict=True))) for row in rows],
        batch_size=500,
        update_conflicts=True,
        unique_fields=["project", "trace_id", "span_id"],
        update_fields=[c for c in SPAN_COLUMNS if c not in ("trace_id", "span_id")],
    )


# --- Trace rollups ----------------------------------------------------------------------------


# What traces_rollup reads of each span of the touched traces: the tree, usage, cost, identity.
ROLLUP_SPAN_FIELDS = (
    "id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "service_name",
    "scope_name",
    "session_id",
    "kind",
    "agent_name",
    *tree.TOKEN_FIELDS,
    "billed",
    "cost",
)


_NEW_ROW_FIELDS = [f for f in ROLLUP_SPAN_FIELDS if f in SPAN_COLUMNS]
_NEW_ROW_INDEXES = [SPAN_COLUMNS.index(f) for f in _NEW_ROW_FIELDS]
_BILLED = SPAN_COLUMNS.index("billed")
_AGENT = SPAN_COLUMNS.index("agent_name")


def traces_rollup(*, project_id: int, trace_ids: list[str], new_rows: list[list] | None = None) -> None:
    """Write a batch's spans and recompute what depends on their whole traces, whatever order the
    spans came in: which span bills each model call, which agent each span belongs to, and the
    trace rows with their totals. With no new rows (reprice), only the recomputation runs.

    Must run in a transaction. On PostgreSQL an advisory lock per trace, taken before reading
    the stored spans, makes concurrent workers touching one trace run one after the other, so
    each sees every span the others committed (no lost rollup between two batches of a trace).
    The stored spans are read without the batch's own (usually all of them: a trace tends to
    arrive whole), so the common case reads nothing back and writes each span once.
    """
    if not trace_ids:
        return
    traces_lock(project_id=project_id, trace_ids=trace_ids)
    new_rows = new_rows or []
    incoming = {(row[0], row[1]) for row in new_rows}
    by_trace: dict[str, list[dict]] = {}
    for span in Span.objects.filter(project_id=project_id, trace_id__in=trace_ids).values(*ROLLUP_SPAN_FIELDS):
        if (span["trace_id"], span["span_id"]) not in incoming:
            by_trace.setdefault(span["trace_id"], []).append(span)
    for row in new_rows:
        span = dict(zip(_NEW_ROW_FIELDS, (row[i] for i in _NEW_ROW_INDEXES), strict=True))
        span["row"] = row
        by_trace.setdefault(row[0], []).append(span)

    changed: list[Span] = []
    traces: list[Trace] = []
    now = timezone.now()
    for trace_id, spans in by_trace.items():
        forest = tree.build(spans)
        for node in forest.nodes.values():
            span = node.span
            if "row" in span:
                span["row"][_BILLED], span["row"][_AGENT] = node.billed, node.agent
            elif node.billed != span["billed"] or node.agent != span["agent_name"]:
                changed.append(Span(id=span["id"], billed=node.billed, agent_name=node.agent))
        traces.append(_trace_row(project_id, trace_id, spans, forest, now))
    if changed:
        Span.objects.bulk_update(changed, ["billed", "agent_name"], batch_size=500)
    spans_write(project_id=project_id, rows=new_rows)
    Trace.objects.bulk_create(
        traces,
        update_conflicts=True,
        unique_fields=["project", "trace_id"],
        update_fields=TRACE_ROLLUP_FIELDS,
    )


def _trace_row(project_id: int, trace_id: str, spans: list[dict], forest: tree.Forest, now: datetime) -> Trace:
    totals = tree.totals(forest)
    # The earliest parentless span is the root; ties broken by span id so every worker agrees.
    root = min(
        (s for s in spans if not s["parent_span_id"]),
        key=lambda s: (s["start_time_unix_nano"], s["span_id"]),
        default=None,
    )
    errors = sum(1 for s in spans if s["status_code"] == 2)
    return Trace(
        project_id=project_id,
        trace_id=trace_id,
        root_span_id=root["span_id"] if root else "",
        root_span_name=root["name"] if root else "",
        service_name=(root and root["service_name"]) or max(s["service_name"] for s in spans),
        session_id=max(s["session_id"] for s in spans),
        start_time_unix_nano=min(s["start_time_unix_nano"] for s in spans),
        end_time_unix_nano=max(s["end_time_unix_nano"] for s in spans),
        status="error" if errors else "ok",
        span_count=len(spans),
        error_count=errors,
        **{name: totals[name] for name in tree.TOKEN_FIELDS},
        cost=totals["cost"],
        unpriced_count=totals["unpriced_count"],
        billed_count=totals["billed_count"],
        # Recomputed from all the trace's spans each time: a parent that arrives late clears
        # `incomplete`, and a replay writes the same values again.
        **tree.quality(forest),
        updated_at=now,
    )


TRACE_ROLLUP_FIELDS = [
    "root_span_id",
    "root_span_name",
    "session_id",
    "service_name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status",
    "span_count",
    "error_count",
    *tree.TOKEN_FIELDS,
    "cost",
    "unpriced_count",
    "billed_count",
    "no_usage_count",
    "incomplete",
    "missing_parents",
    "framework",
    "updated_at",
]


# --- Trace locks ------------------------------------------------------------------------------


def trace_lock_key(project_id: int, trace_id: str) -> int:
    """The PostgreSQL advisory lock key of one trace (a signed 64-bit hash of project and trace id).
    Every writer that reads a trace's spans to recompute something over the whole trace takes it."""
    digest = hashlib.blake2b(f"trace:{project_id}:{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def traces_lock(*, project_id: int, trace_ids: list[str]) -> None:
    """Take the traces' advisory locks until the transaction ends, in key order, so that two
    writers whose traces overlap wait for each other instead of deadlocking. No-op on SQLite,
    where a write transaction already excludes every other writer."""
    if connection.vendor != "postgresql" or not trace_ids:
        return
    keys = sorted(trace_lock_key(project_id, t) for t in trace_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY k) AS locks",
            [keys],
        )
