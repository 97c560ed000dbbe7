"""Durable ingest: accept raw OTLP batches, then turn them into span and trace rows.

The receiver only validates a body and stores it (`batch_accept`); a Celery worker turns it into
rows later (`batch_process`). The raw body is the durable copy of what was acknowledged, so a lost
broker message, a killed worker or a normalization fix never loses a span: the sweeper
(`batches_requeue_stuck`) and `manage.py replay` run the same `batch_process` again, and the
writes are idempotent upserts keyed on (project, trace_id, span_id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from tracer import otlp, semconv
from tracer.celery import task_enqueue, task_send
from tracer.models import IngestBatch, Project
from tracer.pricing import PriceBook, Usage
from tracer.rollup import traces_rollup

log = logging.getLogger(__name__)

PROCESS_TASK = "ingest.process_batch"


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


# --- Span rows --------------------------------------------------------------------------------


def _span_row(r: otlp.SpanRecord, prices: PriceBook) -> list:
    """A span's values in tracer.rollup.SPAN_COLUMNS order (JSON columns still as Python objects)."""
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
