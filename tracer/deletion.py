"""Deletion on request: everything stored of one trace, one session or one end user.

What goes: the traces' span rows (with their GPU attribution, which lives on the span rows), their
trace rows (the rollups), and their spans in the raw batches kept for replay. A raw batch that
holds only deleted traces is deleted; one that holds other traces too is rewritten without the
deleted spans (protobuf, uncompressed), so a replay cannot bring them back and the other spans are
kept. Nothing else stores span data (reports compute from spans; ROI runs keep per-workflow sums).

How the traces are chosen:
- a trace: its id;
- a session: every trace with a span whose session id (tracer/semconv.py SESSION_KEYS, the
  Span.session_id column) is the one asked;
- a user: every trace with a span whose attributes, or whose resource's, name the user
  (semconv.USER_KEYS: `user.id`, `enduser.id`, ...; there is no column, so the project's spans are
  scanned).
A session or a user deletes whole traces: a trace is one piece of work, and its other spans hold
the same conversation.

Raw batches are read twice (a trace found in a later batch may have spans in an earlier one),
then rewritten one per transaction under the batch's row lock, so a worker that claims a pending
batch afterwards reads the rewritten body. A batch a worker is processing right now may write the
spans again after we delete them: the deletion refuses (DeletionBusy, try again shortly) instead.
Rows are deleted TRACES_PER_TRANSACTION traces per transaction, under the traces' advisory locks
(tracer/rollup.py), like every other writer of a trace. A deletion stopped half-way (an error, a
DeletionBusy) leaves nothing inconsistent, and running it again finishes it.

Data received after the deletion started is not covered. A stored body that cannot be decoded (a
failed batch) cannot be searched: it is left as it is and counted (`batches_unreadable`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.lookups import Exact
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from tracer import ingest, otlp, semconv
from tracer.audit import Action, audit_record
from tracer.batches import body_decode
from tracer.models import IngestBatch, Project, Span, Trace
from tracer.rollup import traces_lock

# Traces whose rows go in one transaction: bounds the locks held and the work lost to an error.
TRACES_PER_TRANSACTION = 200
# Batch ids read per query while scanning the raw batches (their bodies are read one at a time).
BATCH_IDS_PER_QUERY = 500
MAX_ID_LENGTH = 200
TRACE_ID = re.compile(r"[0-9a-f]{32}")
_BODY_FIELDS = ("status", "body", "content_type", "content_encoding")


class DeletionInvalid(ValueError):
    """The request does not name exactly one valid trace id, session id or user id."""


class DeletionBusy(Exception):
    """A worker is processing a raw batch that holds the data: deleting now could let it write the
    spans again. Nothing is lost by waiting; ask again in a few seconds."""


@dataclass(slots=True)
class DeletionResult:
    traces: int = 0
    spans: int = 0
    batches_rewritten: int = 0
    batches_deleted: int = 0
    # Stored bodies that could not be decoded, so could not be searched (left as they are).
    batches_unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Selector:
    kind: str  # "trace", "session" or "user"
    value: str

    @property
    def target(self) -> str:
        return f"{self.kind} {self.value}"

    def matches(self, span: OtlpSpan, resource: dict[str, Any]) -> bool:
        """Whether this raw span is chosen by itself (its whole trace then goes)."""
        if self.kind == "trace":
            return span.trace_id.hex() == self.value
        attributes = otlp.attributes(span.attributes)
        if self.kind == "session":
            return semconv.session_of(attributes) == self.value
        return self.value in semconv.user_ids_of(attributes) or self.value in semconv.user_ids_of(resource)


def data_delete(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    trace_id: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    via: str = "",
) -> DeletionResult:
    """Delete one trace, one session or everything of one end user in the project (exactly one of
    the three), audited with `actor` (None for an API key: `via` names the key). Returns the counts.

    Raises DeletionInvalid (not exactly one id, or a malformed one) and DeletionBusy (a worker is
    processing a batch that holds the data; nothing that matters was half-done: ask again)."""
    selector = _selector(trace_id=trace_id, session_id=session_id, user_id=user_id)
    result = DeletionResult()
    targets = _stored_trace_ids(project=project, selector=selector)
    # First pass over the raw batches: the traces only they know (not processed yet), and a refusal
    # before anything is changed when a worker holds one of them.
    for batch_id in _retained_batch_ids(project=project):
        batch = IngestBatch.objects.filter(pk=batch_id).only(*_BODY_FIELDS).first()
        request = _decoded(batch) if batch is not None else None
        if request is None:
            continue
        found = _trace_ids_chosen(request, selector=selector, targets=targets)
        if found and batch.status == IngestBatch.Status.PROCESSING:
            raise DeletionBusy(f"batch {batch.pk} holding this data is being processed; try again in a few seconds")
        targets |= found
    # Second pass: rewrite or delete each batch that holds a chosen trace.
    for batch_id in _retained_batch_ids(project=project):
        targets |= _batch_strip(batch_id=batch_id, selector=selector, targets=targets, result=result)
    for chunk in _chunks(sorted(targets), TRACES_PER_TRANSACTION):
        with transaction.atomic():
            traces_lock(project_id=project.pk, trace_ids=chunk)
            spans, _ = Span.objects.filter(project=project, trace_id__in=chunk).delete()
            traces, _ = Trace.objects.filter(project=project, trace_id__in=chunk).delete()
        result.spans += spans
        result.traces += traces
    audit_record(
        project=project,
        actor=actor,
        action=Action.DATA_DELETE,
        target=selector.target,
        details={**result.as_dict(), "via": via},
    )
    return result


def _selector(*, trace_id: str | None, session_id: str | None, user_id: str | None) -> _Selector:
    given = [
        (kind, (value or "").strip())
        for kind, value in (("trace", trace_id), ("session", session_id), ("user", user_id))
    ]
    given = [(kind, value) for kind, value in given if value]
    if len(given) != 1:
        raise DeletionInvalid("name exactly one trace id, session id or user id")
    kind, value = given[0]
    if kind == "trace":
        value = value.lower()
        if not TRACE_ID.fullmatch(value):
            raise DeletionInvalid(f"{value!r} is not a trace id (32 hex digits)")
    if len(value) > MAX_ID_LENGTH:
        raise DeletionInvalid(f"a {kind} id is at most {MAX_ID_LENGTH} characters")
    return _Selector(kind=kind, value=value)


def _stored_trace_ids(*, project: Project, selector: _Selector) -> set[str]:
    """The ids of the stored traces the selector chooses."""
    if selector.kind == "trace":
        return {selector.value}
    spans = Span.objects.filter(project=project)
    if selector.kind == "session":
        # Trace rows by their index; spans too, for a trace whose spans name several sessions.
        by_trace = Trace.objects.filter(project=project, session_id=selector.value).values_list("trace_id", flat=True)
        by_span = spans.filter(session_id=selector.value).values_list("trace_id", flat=True).distinct()
        return set(by_trace) | set(by_span)
    # No column holds the user: compare each key's value as text (an integer id matches its digits).
    naming = [
        Exact(Cast(KeyTextTransform(key, field), TextField()), selector.value)
        for field in ("attributes", "resource_attributes")
        for key in semconv.USER_KEYS
    ]
    return set(spans.filter(Q(*naming, _connector=Q.OR)).values_list("trace_id", flat=True).distinct())


def _retained_batch_ids(*, project: Project) -> Iterator[int]:
    """The ids of the project's trace batches that still have their raw body, in order, a page at a
    time (the callers read one body at a time: bodies are up to OCTOTRACE_MAX_BODY_BYTES)."""
    last = 0
    while True:
        ids = list(
            IngestBatch.objects.filter(project=project, body_purged_at__isnull=True, pk__gt=last)
            .order_by("pk")
            .values_list("pk", flat=True)[:BATCH_IDS_PER_QUERY]
        )
        yield from ids
        if len(ids) < BATCH_IDS_PER_QUERY:
            return
        last = ids[-1]


def _decoded(batch: IngestBatch) -> ExportTraceServiceRequest | None:
    body = bytes(batch.body)
    if not body:
        return None
    try:
        return body_decode(
            kind=ingest.BATCHES, body=body, content_type=batch.content_type, content_encoding=batch.content_encoding
        )
    except (otlp.BadBody, otlp.BodyTooLarge):
        return None


def _spans(request: ExportTraceServiceRequest) -> Iterator[tuple[OtlpSpan, dict[str, Any]]]:
    for resource_spans in request.resource_spans:
        resource = otlp.attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield span, resource


def _trace_ids_chosen(request: ExportTraceServiceRequest, *, selector: _Selector, targets: set[str]) -> set[str]:
    """The trace ids of the request's spans that are chosen: by the selector, or already targeted."""
    return {
        span.trace_id.hex()
        for span, resource in _spans(request)
        if span.trace_id.hex() in targets or selector.matches(span, resource)
    }


def _batch_strip(*, batch_id: int, selector: _Selector, targets: set[str], result: DeletionResult) -> set[str]:
    """In one transaction, under the batch's row lock: rewrite the batch without the chosen spans,
    or delete it when nothing else is left. Returns the trace ids of the spans it dropped."""
    with transaction.atomic():
        batch = IngestBatch.objects.select_for_update().filter(pk=batch_id, body_purged_at__isnull=True).first()
        if batch is None or not bytes(batch.body):
            return set()
        request = _decoded(batch)
        if request is None:
            result.batches_unreadable += 1
            return set()
        dropped = _spans_drop(
            request, lambda span, resource: span.trace_id.hex() in targets or selector.matches(span, resource)
        )
        if not dropped:
            return set()
        if batch.status == IngestBatch.Status.PROCESSING:
            raise DeletionBusy(f"batch {batch.pk} holding this data is being processed; try again in a few seconds")
        remaining = otlp.count_spans(request)
        if remaining == 0:
            batch.delete()
            result.batches_deleted += 1
            return dropped
        body = request.SerializeToString()
        fields: dict[str, Any] = {
            "body": body,
            "content_type": otlp.PROTOBUF,
            "content_encoding": "",
            "body_size": len(body),
            "span_count": remaining,
        }
        if batch.status == IngestBatch.Status.DONE:
            fields["trace_count"] = len({span.trace_id.hex() for span, _ in _spans(request)})
        IngestBatch.objects.filter(pk=batch.pk).update(**fields)
        result.batches_rewritten += 1
        return dropped


def _spans_drop(request: ExportTraceServiceRequest, chosen: Callable[[OtlpSpan, dict[str, Any]], bool]) -> set[str]:
    """Remove the chosen spans from the request in place, and the scopes and resources left empty.
    Returns the trace ids of the spans removed."""
    dropped: set[str] = set()
    resources = request.resource_spans
    for r in reversed(range(len(resources))):
        resource = otlp.attributes(resources[r].resource.attributes)
        scopes = resources[r].scope_spans
        for s in reversed(range(len(scopes))):
            spans = scopes[s].spans
            for i in reversed(range(len(spans))):
                if chosen(spans[i], resource):
                    dropped.add(spans[i].trace_id.hex())
                    del spans[i]
            if not spans:
                del scopes[s]
        if not scopes:
            del resources[r]
    return dropped


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
