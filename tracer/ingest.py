"""Durable ingest: accept raw OTLP trace batches, then turn them into span and trace rows.

The receiver only validates a body and stores it (`batch_accept`); a Celery worker turns it into
rows later (`batch_process`). The raw body is the durable copy of what was acknowledged, so a lost
broker message, a killed worker or a normalization fix never loses a span: the sweeper (task
`ingest.requeue_stuck`) and `manage.py replay` run the same `batch_process` again, and the writes
are idempotent upserts keyed on (project, trace_id, span_id) (tracer/rollup.py). How a batch is
stored, claimed, failed, requeued and purged is the stored-batch service, tracer/batches.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Unpack

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracer import batches, messages, otlp, semconv
from tracer.models import IngestBatch, Project
from tracer.pricing import PriceBook, Usage
from tracer.rollup import traces_rollup

PROCESS_TASK = "ingest.process_batch"


def _counts(request: ExportTraceServiceRequest, body: bytes) -> dict[str, int] | None:
    spans = otlp.count_spans(request)
    return {"span_count": spans, "body_size": len(body)} if spans else None


# Trace batches keep their row, and their body for OCTOTRACE_RAW_RETENTION_HOURS, so they can be replayed.
BATCHES = batches.BatchKind(
    model=IngestBatch, task=PROCESS_TASK, parse=otlp.parse_request, counts=_counts, keep_rows=True
)


@dataclass(frozen=True, slots=True)
class ProcessResult:
    batch_id: int
    spans: int
    traces: int
    rejected: int


def batch_accept(
    *, project: Project, body: bytes, content_type: str, **received: Unpack[batches.Received]
) -> IngestBatch | None:
    """Validate an OTLP traces body and store it durably; the worker is told once the row is committed.

    Raises otlp.BadBody / otlp.BodyTooLarge. Returns None for a valid request without spans.
    """
    return batches.batch_accept(kind=BATCHES, project=project, body=body, content_type=content_type, **received)


def batch_process(*, batch_id: int) -> ProcessResult | None:
    """Decode a stored batch and upsert its spans and traces. Safe to run twice, or concurrently.

    Returns None when there was nothing to do (already done, failed, or unknown id). Database
    errors propagate so the task can retry; a body that cannot be decoded marks the batch failed.
    """
    claimed = batches.batch_claim(kind=BATCHES, batch_id=batch_id)
    if claimed is None:
        return None
    records: dict[tuple[str, str], otlp.SpanRecord] = {}
    rejected: list[str] = []
    for item in otlp.iter_spans(claimed.request):
        if isinstance(item, str):
            rejected.append(item)
        else:
            # The same span twice in one body: keep the last copy (one row per span).
            records[(item.trace_id, item.span_id)] = item

    project_id = claimed.batch.project_id
    trace_ids = sorted({trace_id for trace_id, _ in records})
    prices = PriceBook(project_id=project_id)
    # Messages are split out here, outside the transaction: hashing is the worker's CPU, not locks.
    store = messages.Store() if settings.OCTOTRACE_MESSAGE_STORE else None
    rows = [_span_row(record, prices, store) for record in records.values()]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Safe to relax here: the acknowledged data is the raw batch, committed durably by the
            # receiver. If PostgreSQL crashes before this commit reaches disk, the batch is still
            # "processing" and the sweeper runs it again.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        if store is not None:
            # Before the spans: a committed span never references a message that is not there.
            messages.store_write(project_id=project_id, store=store)
        traces_rollup(project_id=project_id, trace_ids=trace_ids, new_rows=rows)
        batches.batch_done(
            kind=BATCHES, batch_id=batch_id, error=_rejected_summary(rejected), trace_count=len(trace_ids)
        )
    return ProcessResult(batch_id=batch_id, spans=len(records), traces=len(trace_ids), rejected=len(rejected))


def _rejected_summary(rejected: list[str]) -> str:
    if not rejected:
        return ""
    shown = "; ".join(rejected[:5])
    more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
    return f"{len(rejected)} span(s) not stored: {shown}{more}"


# --- Span rows --------------------------------------------------------------------------------


def _span_row(r: otlp.SpanRecord, prices: PriceBook, store: messages.Store | None) -> list:
    """A span's values in tracer.rollup.SPAN_COLUMNS order (JSON columns still as Python objects),
    its captured messages moved into `store` (when the message store is on)."""
    n = semconv.normalize(name=r.name, attributes=r.attributes)
    attributes, events = r.attributes, r.events
    if store is not None:
        attributes, events = messages.span_split(attributes=attributes, events=events, store=store)
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
        attributes,
        events,
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


# --- Replay ---------------------------------------------------------------------------------


def batches_for_replay(
    *,
    project: Project | None = None,
    since: datetime | None = None,
    statuses: list[str] | None = None,
    batch_ids: list[int] | None = None,
) -> QuerySet[IngestBatch]:
    selected = IngestBatch.objects.filter(body_purged_at__isnull=True)
    if project is not None:
        selected = selected.filter(project=project)
    if since is not None:
        selected = selected.filter(received_at__gte=since)
    if statuses:
        selected = selected.filter(status__in=statuses)
    if batch_ids:
        selected = selected.filter(pk__in=batch_ids)
    return selected.order_by("pk")


def batch_replay(*, batch_id: int, inline: bool) -> ProcessResult | None:
    """Reset a stored batch to pending and process it again (inline, or through the worker)."""
    IngestBatch.objects.filter(pk=batch_id, body_purged_at__isnull=True).update(
        status=IngestBatch.Status.PENDING, attempts=0, error="", enqueued_at=timezone.now()
    )
    if inline:
        return batch_process(batch_id=batch_id)
    batches.batch_enqueue(kind=BATCHES, batch_id=batch_id)
    return None
