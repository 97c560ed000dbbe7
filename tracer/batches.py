"""Stored batches: an OTLP request body kept as received until a worker has turned it into rows.

Trace ingest (tracer/ingest.py, IngestBatch) and GPU metrics (tracer/gpu/metrics.py, GpuMetricsBatch)
share this lifecycle; each describes its batches with a `BatchKind` and does only its own part,
turning a decoded request into rows.

- accept: the receiver decodes the body only to validate it, stores it as received, and hands
  the batch id to the broker once the row is committed. A broker outage loses nothing.
- claim: a worker takes the batch with a conditional update (pending or processing, fewer than
  OCTOTRACE_BATCH_MAX_ATTEMPTS claims), gives it up (failed) after that many, and decodes the body;
  a body that cannot be decoded fails the batch at once and is kept for inspection.
- done / fail: the worker records the outcome.
- requeue stuck: the sweeper re-enqueues batches whose message was lost or whose worker died.
- purge: past OCTOTRACE_RAW_RETENTION_HOURS, processed batches lose their raw body (or their row).

The rows a batch writes are upserts on a natural key, so running a batch twice, or two workers
running it at once after a requeue, writes each row once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from tracer import otlp
from tracer.celery import task_enqueue, task_send
from tracer.models import Project, StoredBatch

log = logging.getLogger(__name__)

Status = StoredBatch.Status
UNFINISHED = (Status.PENDING, Status.PROCESSING)


@dataclass(frozen=True, slots=True)
class BatchKind:
    """One kind of stored batch: all that differs between trace batches and metrics batches."""

    model: type[StoredBatch]
    # The Celery task that processes one batch, given its id.
    task: str
    # Decoded body -> request: otlp.parse_request or otlp.parse_metrics_request.
    parse: Callable[..., Any]
    # (request, body) -> the kind's own columns for a new batch (its counts), or None when the
    # request holds nothing worth storing (it is then answered but not stored).
    counts: Callable[[Any, bytes], dict[str, int] | None]
    # True: a processed batch keeps its row, and its body until the retention (trace batches, so they
    # can be replayed; the model has `body_purged_at`). False: the body goes when processed, the row
    # after the retention.
    keep_rows: bool


class Received(TypedDict, total=False):
    """What a receiver knows of a request besides its body (the headers it stores)."""

    content_encoding: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Claimed:
    batch: StoredBatch
    request: Any


# --- Receiving ------------------------------------------------------------------------------


def body_decode(*, kind: BatchKind, body: bytes, content_type: str, content_encoding: str) -> Any:
    """Decompress (within OCTOTRACE_MAX_BODY_BYTES) and parse a body. Raises otlp.BadBody /
    otlp.BodyTooLarge."""
    data = otlp.decompress(body, encoding=content_encoding, limit=settings.OCTOTRACE_MAX_BODY_BYTES)
    return kind.parse(data, content_type=content_type)


def batch_accept(
    *,
    kind: BatchKind,
    project: Project,
    body: bytes,
    content_type: str,
    content_encoding: str = "",
    user_agent: str = "",
) -> StoredBatch | None:
    """Validate a body and store it; its task is enqueued once the row is committed.

    Raises otlp.BadBody / otlp.BodyTooLarge. Returns None, storing nothing, for a valid request
    that holds nothing of this kind (no span, no GPU metric).
    """
    request = body_decode(kind=kind, body=body, content_type=content_type, content_encoding=content_encoding)
    fields = kind.counts(request, body)
    if fields is None:
        return None
    with transaction.atomic():
        batch = kind.model.objects.create(
            project=project,
            body=body,
            content_type=otlp.media_type(content_type),
            content_encoding=content_encoding.strip().lower(),
            user_agent=user_agent[:300],
            **fields,
        )
        task_enqueue(kind.task, batch.pk)
    return batch


def batch_enqueue(*, kind: BatchKind, batch_id: int) -> bool:
    """Hand a stored batch's id to the broker now (the sweeper, replay); False if the broker is
    down, and the sweeper tries again."""
    return task_send(kind.task, batch_id)


# --- Processing -----------------------------------------------------------------------------


def batch_claim(*, kind: BatchKind, batch_id: int) -> Claimed | None:
    """Claim a stored batch for processing and decode its body.

    None when there is nothing to do: the batch is done, failed or unknown; it was claimed
    OCTOTRACE_BATCH_MAX_ATTEMPTS times already (now failed); or its body cannot be decoded (now
    failed, body kept).
    """
    now = timezone.now()
    limit = settings.OCTOTRACE_BATCH_MAX_ATTEMPTS
    batches = kind.model.objects
    claimed = batches.filter(pk=batch_id, status__in=UNFINISHED, attempts__lt=limit).update(
        status=Status.PROCESSING, attempts=F("attempts") + 1, started_at=now
    )
    if not claimed:
        gave_up = batches.filter(pk=batch_id, status__in=UNFINISHED).update(
            status=Status.FAILED, error=f"gave up after {limit} attempts", processed_at=now
        )
        if gave_up:
            log.error("%s %s failed: too many attempts", kind.model._meta.verbose_name, batch_id)
        return None
    batch = batches.get(pk=batch_id)
    try:
        request = body_decode(
            kind=kind, body=bytes(batch.body), content_type=batch.content_type, content_encoding=batch.content_encoding
        )
    except (otlp.BadBody, otlp.BodyTooLarge) as exc:
        batch_mark_failed(kind=kind, batch_id=batch_id, error=str(exc))
        return None
    return Claimed(batch=batch, request=request)


def batch_done(*, kind: BatchKind, batch_id: int, error: str = "", **counts: int) -> None:
    """Close a processed batch. Call it in the transaction that wrote its rows, so that a crash
    before that commit leaves it processing and the sweeper runs it again. Its body goes now unless
    the kind keeps it for the retention (and OCTOTRACE_RAW_RETENTION_HOURS is not 0)."""
    now = timezone.now()
    done: dict[str, Any] = {"status": Status.DONE, "processed_at": now, "error": error, **counts}
    if not kind.keep_rows:
        # The rows written are the data now; a replay could only rewrite them.
        done["body"] = b""
    elif settings.OCTOTRACE_RAW_RETENTION_HOURS == 0:
        done.update(body=b"", body_purged_at=now)
    kind.model.objects.filter(pk=batch_id).update(**done)


def batch_mark_failed(*, kind: BatchKind, batch_id: int, error: str) -> None:
    """A batch that cannot be processed: recorded with its error, body kept for inspection/replay."""
    kind.model.objects.filter(pk=batch_id).exclude(status=Status.DONE).update(
        status=Status.FAILED, error=error[:10_000], processed_at=timezone.now()
    )
    log.error("%s %s failed: %s", kind.model._meta.verbose_name, batch_id, error)


# --- Recovery and maintenance ---------------------------------------------------------------


def batches_requeue_stuck(*, kind: BatchKind, now: datetime | None = None) -> int:
    """Re-enqueue batches whose message was lost (pending) or whose worker died (processing),
    OCTOTRACE_BATCH_STUCK_SECONDS after their last enqueue and claim, each once even with sweepers
    running concurrently. Returns how many were handed to the broker."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OCTOTRACE_BATCH_STUCK_SECONDS)
    stuck = kind.model.objects.filter(
        Q(status=Status.PENDING) | Q(status=Status.PROCESSING, started_at__lt=cutoff), enqueued_at__lt=cutoff
    )
    count = 0
    for batch_id in stuck.values_list("pk", flat=True).iterator():
        # Conditional update: if another sweeper (or a worker) moved it meanwhile, leave it.
        touched = kind.model.objects.filter(pk=batch_id, enqueued_at__lt=cutoff).update(enqueued_at=now)
        if touched and batch_enqueue(kind=kind, batch_id=batch_id):
            count += 1
    if count:
        log.warning("re-enqueued %s stuck %s(es)", count, kind.model._meta.verbose_name)
    return count


def batches_purge(*, kind: BatchKind, now: datetime | None = None) -> int:
    """Past OCTOTRACE_RAW_RETENTION_HOURS, processed batches lose their raw body (kinds that keep
    their rows) or their row (the others, whose body went when processed). Failed batches keep
    body and row, for inspection and replay. Returns how many batches were purged."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.OCTOTRACE_RAW_RETENTION_HOURS)
    done = kind.model.objects.filter(status=Status.DONE)
    if kind.keep_rows:
        return done.filter(processed_at__lt=cutoff, body_purged_at__isnull=True).update(body=b"", body_purged_at=now)
    deleted, _ = done.filter(received_at__lt=cutoff).delete()
    return deleted
