"""Durable ingest: accept raw OTLP batches, then turn them into span and trace rows.

The receiver only validates a body and stores it (`batch_accept`); a Celery worker turns it into
rows later (`batch_process`). The raw body is the durable copy of what was acknowledged, so a lost
broker message, a killed worker or a normalization fix never loses a span: the sweeper
(`batches_requeue_stuck`) and `manage.py replay` run the same `batch_process` again, and the
writes are idempotent upserts keyed on (project, trace_id, span_id).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from tracer import otlp, semconv, tree
from tracer.celery import task_enqueue, task_send
from tracer.models import IngestBatch, Project, Span, Trace
from tracer.pricing import PriceBook, Usage

log = logging.getLogger(__name__)

PROCESS_TASK = "ingest.process_batch"

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


@dataclass(frozen=True, slots=True)
class ProcessResult:
    batch_id: int
    spans: int
    traces: int
    rejected: int


# --- Receiving ------------------------------------------------------------------------------


def batch_accept(
    *, project: Project, body: bytes, content_type: str, content_encoding: str = "", user_agent: str = ""
) -> IngestBatch | None:
    """Validate an OTLP body and store it durably; the worker is told once the row is committed.

    Raises otlp.BadBody / otlp.BodyTooLarge. Returns None for a valid request without spans.
    """
    data = otlp.decompress(body, encoding=content_encoding, limit=settings.OCTOTRACE_MAX_BODY_BYTES)
    request = otlp.parse_request(data, content_type=content_type)
    span_count = otlp.count_spans(request)
    if span_count == 0:
        return None
    with transaction.atomic():
        batch = IngestBatch.objects.create(
            project=project,
            body=body,
            body_size=len(body),
            content_type=otlp.media_type(content_type),
            content_encoding=content_encoding.strip().lower(),
            user_agent=user_agent[:300],
            span_count=span_count,
        )
        task_enqueue(PROCESS_TASK, batch.pk)
    return batch


def batch_enqueue(*, batch_id: int) -> bool:
    """Hand a stored batch's id to the broker now (the sweeper and replay); False if the broker is
    down, and the sweeper tries again."""
    return task_send(PROCESS_TASK, batch_id)


# --- Processing -----------------------------------------------------------------------------


def batch_process(*, batch_id: int) -> ProcessResult | None:
    """Decode a stored batch and upsert its spans and traces. Safe to run twice, or concurrently.

    Returns None when there was nothing to do (already done, failed, or unknown id). Database
    errors propagate so the task can retry; a body that cannot be decoded marks the batch failed.
    """
    now = timezone.now()
    unfinished = [IngestBatch.Status.PENDING, IngestBatch.Status.PROCESSING]
    claimed = IngestBatch.objects.filter(
        pk=batch_id, status__in=unfinished, attempts__lt=settings.OCTOTRACE_BATCH_MAX_ATTEMPTS
    ).update(status=IngestBatch.Status.PROCESSING, attempts=F("attempts") + 1, started_at=now)
    if not claimed:
        gave_up = IngestBatch.objects.filter(pk=batch_id, status__in=unfinished).update(
            status=IngestBatch.Status.FAILED,
            error=f"gave up after {settings.OCTOTRACE_BATCH_MAX_ATTEMPTS} attempts",
            processed_at=now,
        )
        if gave_up:
            log.error("ingest batch %s failed: too many attempts", batch_id)
        return None

    batch = IngestBatch.objects.get(pk=batch_id)
    try:
        data = otlp.decompress(
            bytes(batch.body), encoding=batch.content_encoding, limit=settings.OCTOTRACE_MAX_BODY_BYTES
        )
        request = otlp.parse_request(data, content_type=batch.content_type)
    except (otlp.BadBody, otlp.BodyTooLarge) as exc:
        batch_mark_failed(batch_id=batch_id, error=str(exc))
        return None

    records: dict[tuple[str, str], otlp.SpanRecord] = {}
    rejected: list[str] = []
    for item in otlp.iter_spans(request):
        if isinstance(item, str):
            rejected.append(item)
        else:
            # The same span twice in one body: keep the last copy (one row per span).
            records[(item.trace_id, item.span_id)] = item

    trace_ids = sorted({trace_id for trace_id, _ in records})
    done = {
        "status": IngestBatch.Status.DONE,
        "processed_at": timezone.now(),
        "trace_count": len(trace_ids),
        "error": _rejected_summary(rejected),
    }
    if settings.OCTOTRACE_RAW_RETENTION_HOURS == 0:
        done.update(body=b"", body_purged_at=done["processed_at"])
    prices = PriceBook(project_id=batch.project_id)
    rows = [_span_row(record, prices) for record in records.values()]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Safe to relax here: the acknowledged data is the raw batch, committed durably by the
            # receiver. If PostgreSQL crashes before this commit reaches disk, the batch is still
            # "processing" and the sweeper runs it again.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        traces_rollup(project_id=batch.project_id, trace_ids=trace_ids, new_rows=rows)
        IngestBatch.objects.filter(pk=batch_id).update(**done)
    return ProcessResult(batch_id=batch_id, spans=len(records), traces=len(trace_ids), rejected=len(rejected))


def batch_mark_failed(*, batch_id: int, error: str) -> None:
    IngestBatch.objects.filter(pk=batch_id).exclude(status=IngestBatch.Status.DONE).update(
        status=IngestBatch.Status.FAILED, error=error[:10_000], processed_at=timezone.now()
    )
    log.error("ingest batch %s failed: %s", batch_id, error)


def _rejected_summary(rejected: list[str]) -> str:
    if not rejected:
        return ""
    shown = "; ".join(rejected[:5])
    more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
    return f"{len(rejected)} span(s) not stored: {shown}{more}"


# --- Writing --------------------------------------------------------------------------------


def _span_row(r: otlp.SpanRecord, prices: PriceBook) -> list:
    """A span's values in SPAN_COLUMNS order (JSON columns still as Python objects)."""
    n = semconv.normalize(name=r.name, attributes=r.attributes)
    usage = Usage(n.input_tokens, n.output_tokens, n.cached_input_tokens, n.cache_write_tokens, n.reasoning_tokens)
    cost = prices.cost(provider=n.provider, model=n.model, start_time_unix_nano=r.start_time_unix_nano, usage=usage)
    return [
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        r.name,
        r.span_kind,
        r.start_time_unix_nano,
        r.end_time_unix_nano,
        r.status_code,
        r.status_message,
        r.service_name,
        r.scope_name,
        r.scope_version,
        r.resource_attributes,
        r.attributes,
        r.events,
        r.links,
        n.kind,
        n.agent_name,
        n.model,
        n.provider,
        n.session_id,
        n.input_tokens,
        n.output_tokens,
        n.cached_input_tokens,
        n.cache_write_tokens,
        n.reasoning_tokens,
        n.total_tokens,
        n.has_usage,
        cost,
        n.reported_cost,
    ]


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
    if connection.vendor == "postgresql":
        keys = sorted(_lock_key(project_id, t) for t in trace_ids)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(%s::bigint[]) AS k ORDER BY k) AS locks",
                [keys],
            )
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
        traces.append(_trace_row(project_id, trace_id, spans, tree.totals(forest), now))
    if changed:
        Span.objects.bulk_update(changed, ["billed", "agent_name"], batch_size=500)
    spans_write(project_id=project_id, rows=new_rows)
    Trace.objects.bulk_create(
        traces,
        update_conflicts=True,
        unique_fields=["project", "trace_id"],
        update_fields=TRACE_ROLLUP_FIELDS,
    )


def _trace_row(project_id: int, trace_id: str, spans: list[dict], totals: dict, now: datetime) -> Trace:
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
    "updated_at",
]


def _lock_key(project_id: int, trace_id: str) -> int:
    digest = hashlib.blake2b(f"trace:{project_id}:{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- Recovery and maintenance ---------------------------------------------------------------


def batches_requeue_stuck(*, now: datetime | None = None) -> int:
    """Re-enqueue batches whose message was lost or whose worker died. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OCTOTRACE_BATCH_STUCK_SECONDS)
    stuck = IngestBatch.objects.filter(
        Q(status=IngestBatch.Status.PENDING, enqueued_at__lt=cutoff)
        | Q(status=IngestBatch.Status.PROCESSING, enqueued_at__lt=cutoff, started_at__lt=cutoff)
    )
    return stored_batches_requeue(stuck=stuck, cutoff=cutoff, now=now, enqueue=batch_enqueue)


def stored_batches_requeue(*, stuck: QuerySet, cutoff: datetime, now: datetime, enqueue: Callable[..., bool]) -> int:
    """Re-enqueue the stuck batches of a staging table (`enqueued_at` before `cutoff`), each once
    even with sweepers running concurrently. Returns how many were handed to the broker."""
    count = 0
    for batch_id in stuck.values_list("pk", flat=True).iterator():
        # Conditional update: if another sweeper (or a worker) moved it meanwhile, leave it.
        touched = stuck.model.objects.filter(pk=batch_id, enqueued_at__lt=cutoff).update(enqueued_at=now)
        if touched and enqueue(batch_id=batch_id):
            count += 1
    if count:
        log.warning("re-enqueued %s stuck %s row(s)", count, stuck.model._meta.verbose_name)
    return count


def raw_bodies_purge(*, now: datetime | None = None) -> int:
    """Drop the raw bodies of batches processed longer ago than the retention. Failed batches
    keep theirs, so they can be replayed after a fix."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.OCTOTRACE_RAW_RETENTION_HOURS)
    return IngestBatch.objects.filter(
        status=IngestBatch.Status.DONE, processed_at__lt=cutoff, body_purged_at__isnull=True
    ).update(body=b"", body_purged_at=now)


def batches_for_replay(
    *,
    project: Project | None = None,
    since: datetime | None = None,
    statuses: list[str] | None = None,
    batch_ids: list[int] | None = None,
) -> QuerySet[IngestBatch]:
    batches = IngestBatch.objects.filter(body_purged_at__isnull=True)
    if project is not None:
        batches = batches.filter(project=project)
    if since is not None:
        batches = batches.filter(received_at__gte=since)
    if statuses:
        batches = batches.filter(status__in=statuses)
    if batch_ids:
        batches = batches.filter(pk__in=batch_ids)
    return batches.order_by("pk")


def batch_replay(*, batch_id: int, inline: bool) -> ProcessResult | None:
    """Reset a stored batch to pending and process it again (inline, or through the worker)."""
    IngestBatch.objects.filter(pk=batch_id, body_purged_at__isnull=True).update(
        status=IngestBatch.Status.PENDING, attempts=0, error="", enqueued_at=timezone.now()
    )
    if inline:
        return batch_process(batch_id=batch_id)
    batch_enqueue(batch_id=batch_id)
    return None
