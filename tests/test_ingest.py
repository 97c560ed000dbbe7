"""The ingest services (tracer/ingest.py) called directly, against the real database.

Batches are accepted inside the test's transaction, so the on_commit enqueue never fires and each
test decides when a batch is processed.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.factories import CORPUS, CORPUS_CAPTURES, broker_queue_size, corpus_bytes, corpus_protobuf
from tracer import batches, ingest, otlp, rollup
from tracer.celery import Queues
from tracer.models import IngestBatch, Project, Span, Trace
from tracer.projects import project_create
from tracer.tasks import process_batch

CAPTURE_IDS = [stem for stem, _, _ in CORPUS_CAPTURES]
# A capture whose spans are in two scopes, used where one capture is enough.
CAPTURE = "otel-openai-v2-multiagent-content"
TRACE_VALUE_FIELDS = [f for f in rollup.TRACE_ROLLUP_FIELDS if f != "updated_at"]
SPAN_VALUE_FIELDS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "span_kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "service_name",
    "scope_name",
    "scope_version",
]


def expected(stem: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{stem}.expected.json").read_text())


def request_of(stem: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(corpus_protobuf(stem))
    return request


def subset(request: ExportTraceServiceRequest, span_ids: Iterable[str]) -> bytes:
    """A new request body with the same resources and scopes, holding only these spans."""
    wanted = set(span_ids)
    out = ExportTraceServiceRequest()
    for resource_spans in request.resource_spans:
        new_rs = None
        for scope_spans in resource_spans.scope_spans:
            spans = [s for s in scope_spans.spans if s.span_id.hex() in wanted]
            if not spans:
                continue
            if new_rs is None:
                new_rs = out.resource_spans.add()
                new_rs.resource.CopyFrom(resource_spans.resource)
                new_rs.schema_url = resource_spans.schema_url
            new_ss = new_rs.scope_spans.add()
            new_ss.scope.CopyFrom(scope_spans.scope)
            new_ss.schema_url = scope_spans.schema_url
            new_ss.spans.extend(spans)
    assert otlp.count_spans(out) == len(wanted), "asked for spans that are not in the capture"
    return out.SerializeToString()


def accept(project: Project, body: bytes, *, encoding: str = "") -> IngestBatch:
    batch = ingest.batch_accept(project=project, body=body, content_type=otlp.PROTOBUF, content_encoding=encoding)
    assert batch is not None
    return batch


def accept_and_process(project: Project, body: bytes, *, encoding: str = "") -> IngestBatch:
    batch = accept(project, body, encoding=encoding)
    ingest.batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    return batch


def trace_values(project: Project) -> list[dict[str, Any]]:
    return list(Trace.objects.filter(project=project).order_by("trace_id").values("trace_id", *TRACE_VALUE_FIELDS))


def span_rows(project: Project) -> list[dict[str, Any]]:
    return list(Span.objects.filter(project=project).order_by("trace_id", "span_id").values("id", *SPAN_VALUE_FIELDS))


def root_span_id(stem: str) -> str:
    (trace,) = expected(stem)["traces"]
    (root,) = trace["root_span_ids"]
    return root


def make_project(name: str) -> Project:
    return project_create(name=name)


# --- Every capture ---------------------------------------------------------------------------


@pytest.mark.parametrize(("stem", "body_file", "encoding"), CORPUS_CAPTURES, ids=CAPTURE_IDS)
def test_it_stores_every_span_of_every_capture(project_a, stem: str, body_file: str, encoding: str) -> None:
    want = expected(stem)
    batch = accept_and_process(project_a, corpus_bytes(body_file), encoding=encoding)

    assert batch.status == IngestBatch.Status.DONE
    assert batch.error == ""
    assert batch.attempts == 1
    assert batch.span_count == want["span_count"]
    assert batch.trace_count == want["trace_count"]
    assert batch.processed_at is not None

    stored = {s["span_id"]: s for s in span_rows(project_a)}
    assert Span.objects.filter(project=project_a).count() == want["span_count"]
    assert sorted(stored) == sorted(s["span_id"] for s in want["spans"])
    for span in want["spans"]:
        row = stored[span["span_id"]]
        assert row["trace_id"] == span["trace_id"]
        assert row["parent_span_id"] == span["parent_span_id"]
        assert row["name"] == span["name"]
        assert row["span_kind"] == span["kind"]
        assert row["start_time_unix_nano"] == int(span["start_time_unix_nano"])
        assert row["end_time_unix_nano"] == int(span["end_time_unix_nano"])
        assert row["status_code"] == span["status_code"]
        assert row["service_name"] == span["service_name"]
        assert row["scope_name"] == span["scope"]
        assert row["scope_version"] == span["scope_version"]

    (want_trace,) = want["traces"]
    (trace,) = Trace.objects.filter(project=project_a)
    assert trace.trace_id == want_trace["trace_id"]
    assert trace.span_count == want_trace["span_count"]
    assert trace.root_span_name == want_trace["root_span_name"]
    assert trace.root_span_id == want_trace["root_span_ids"][0]
    assert trace.start_time_unix_nano == min(int(s["start_time_unix_nano"]) for s in want["spans"])
    assert trace.end_time_unix_nano == max(int(s["end_time_unix_nano"]) for s in want["spans"])
    assert trace.status == "ok"
    assert trace.error_count == 0
    assert trace.service_name == want["spans"][0]["service_name"]


def test_it_keeps_span_events_and_attributes_as_sent(project_a) -> None:
    want = expected(CAPTURE)
    accept_and_process(project_a, corpus_protobuf(CAPTURE))
    events = dict(Span.objects.filter(project=project_a).values_list("span_id", "events"))
    attributes = dict(Span.objects.filter(project=project_a).values_list("span_id", "attributes"))
    for span in want["spans"]:
        assert [e["name"] for e in events[span["span_id"]]] == span["event_names"]
        for key, value in span["token_attributes"].items():
            assert attributes[span["span_id"]][key] == value


def test_it_ignores_a_request_without_spans(project_a) -> None:
    body = ExportTraceServiceRequest().SerializeToString()
    assert ingest.batch_accept(project=project_a, body=body, content_type=otlp.PROTOBUF) is None
    assert not IngestBatch.objects.exists()


# --- Idempotency -----------------------------------------------------------------------------


def test_it_leaves_one_row_per_span_when_a_batch_is_processed_twice(project_a) -> None:
    batch = accept_and_process(project_a, corpus_protobuf(CAPTURE))
    spans_before = span_rows(project_a)
    traces_before = trace_values(project_a)

    result = ingest.batch_replay(batch_id=batch.pk, inline=True)

    assert result == ingest.ProcessResult(batch_id=batch.pk, spans=14, traces=1, rejected=0)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    assert batch.attempts == 1
    # Same rows, updated in place (same primary keys), not deleted and inserted again.
    assert span_rows(project_a) == spans_before
    assert trace_values(project_a) == traces_before
    assert Trace.objects.filter(project=project_a).count() == 1


def test_it_does_nothing_when_a_done_batch_is_processed_again_without_replay(project_a) -> None:
    batch = accept_and_process(project_a, corpus_protobuf(CAPTURE))
    assert ingest.batch_process(batch_id=batch.pk) is None
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    assert batch.attempts == 1


def test_it_leaves_one_row_per_span_when_the_same_body_comes_twice(project_a) -> None:
    body = corpus_protobuf(CAPTURE)
    first = accept_and_process(project_a, body)
    spans_once = span_rows(project_a)
    traces_once = trace_values(project_a)

    second = accept_and_process(project_a, body)

    assert first.pk != second.pk
    assert second.status == IngestBatch.Status.DONE
    assert span_rows(project_a) == spans_once
    assert len(spans_once) == 14
    assert trace_values(project_a) == traces_once


def test_it_leaves_one_row_per_span_when_batches_overlap(project_a) -> None:
    request = request_of(CAPTURE)
    ids = [s["span_id"] for s in expected(CAPTURE)["spans"]]
    first = accept_and_process(project_a, subset(request, ids[:9]))
    second = accept_and_process(project_a, subset(request, ids[5:]))

    assert (first.status, second.status) == (IngestBatch.Status.DONE, IngestBatch.Status.DONE)
    assert sorted(Span.objects.filter(project=project_a).values_list("span_id", flat=True)) == sorted(ids)
    (trace,) = Trace.objects.filter(project=project_a)
    assert trace.span_count == 14
    assert trace.root_span_name == "invoke_workflow research_report"


def test_it_keeps_projects_apart_when_they_send_the_same_spans(project_a, project_b) -> None:
    body = corpus_protobuf(CAPTURE)
    accept_and_process(project_a, body)
    accept_and_process(project_b, body)
    assert Span.objects.filter(project=project_a).count() == 14
    assert Span.objects.filter(project=project_b).count() == 14
    assert Trace.objects.filter(project=project_b).get().span_count == 14


def test_processing_a_batch_writes_only_its_own_spans(project_a, project_b) -> None:
    # Batches processed one after the other in one enclosing transaction (a test, a replay run
    # inside atomic()): the second must not write the first one's spans again.
    accept_and_process(project_a, corpus_protobuf(CAPTURE))
    Span.objects.filter(project=project_a).delete()

    accept_and_process(project_b, corpus_protobuf("traceloop-openai-multiagent-content"))

    assert Span.objects.filter(project=project_a).count() == 0
    assert Span.objects.filter(project=project_b).count() == 14


@pytest.mark.django_db(transaction=True)
def test_it_leaves_one_row_per_span_when_repeated_and_overlapping_batches_commit_separately(project_a) -> None:
    # The production path: every batch commits on its own (the on_commit enqueue fires here too).
    request = request_of(CAPTURE)
    ids = [s["span_id"] for s in expected(CAPTURE)["spans"]]
    body = corpus_protobuf(CAPTURE)
    first = accept_and_process(project_a, body)
    spans_once = span_rows(project_a)
    traces_once = trace_values(project_a)

    ingest.batch_replay(batch_id=first.pk, inline=True)
    accept_and_process(project_a, body)
    accept_and_process(project_a, subset(request, ids[:9]))
    accept_and_process(project_a, subset(request, ids[5:]))

    assert span_rows(project_a) == spans_once
    assert trace_values(project_a) == traces_once
    assert set(IngestBatch.objects.values_list("status", flat=True)) == {IngestBatch.Status.DONE}


def stored_rows(project: Project) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A project's span and trace rows as ingest wrote them, without ids and write times."""
    spans = Span.objects.filter(project=project).order_by("trace_id", "span_id").values(*rollup.SPAN_COLUMNS)
    return list(spans), trace_values(project)


def process_at_once(batch_ids: list[int]) -> None:
    """Process the batches in threads released together by a barrier, each thread on its own
    database connection, as worker processes would."""
    start = threading.Barrier(len(batch_ids), timeout=30)
    errors: list[BaseException] = []

    def work(batch_id: int) -> None:
        try:
            start.wait()
            ingest.batch_process(batch_id=batch_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(batch_id,)) for batch_id in batch_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_processing_overlapping_batches_of_one_trace_at_once_write_the_rows_of_one_batch() -> None:
    # Two batches of one trace, sharing spans and each with spans of its own. Without the per-trace
    # lock, each worker would roll the trace up from the spans it saw, and the last to commit would
    # leave a trace row without the other's spans: one round shows it about two times in three,
    # so the test runs three.
    ids = [s["span_id"] for s in expected(CAPTURE)["spans"]]
    request = request_of(CAPTURE)
    first, second = subset(request, ids[:9]), subset(request, ids[5:])  # spans 5 to 8 in both
    whole = make_project("whole")
    accept_and_process(whole, corpus_protobuf(CAPTURE))
    one_batch = stored_rows(whole)
    assert len(one_batch[0]) == 14 and one_batch[1][0]["span_count"] == 14

    for n in range(3):
        project = make_project(f"concurrent {n}")
        batch_ids = [accept(project, first).pk, accept(project, second).pk]

        process_at_once(batch_ids)

        statuses = IngestBatch.objects.filter(pk__in=batch_ids).values_list("status", flat=True)
        assert list(statuses) == [IngestBatch.Status.DONE] * 2
        assert stored_rows(project) == one_batch, f"round {n}"


# --- Out-of-order arrival --------------------------------------------------------------------


def three_parts(stem: str) -> list[list[str]]:
    """The capture's spans in three parts: two of children, and the root with the rest."""
    root = root_span_id(stem)
    children = [s["span_id"] for s in expected(stem)["spans"] if s["span_id"] != root]
    third = len(children) // 3
    return [children[:third], children[third : 2 * third], [*children[2 * third :], root]]


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_it_converges_whatever_the_arrival_order(db, stem: str) -> None:
    request = request_of(stem)
    whole = make_project("whole")
    accept_and_process(whole, corpus_protobuf(stem))
    reference = trace_values(whole)
    assert reference[0]["span_count"] == expected(stem)["span_count"]

    bodies = [subset(request, part) for part in three_parts(stem)]
    for n, order in enumerate(itertools.permutations(range(3))):
        project = make_project(f"order {n}")
        batches = [accept(project, bodies[i]) for i in order]
        for batch in batches:
            ingest.batch_process(batch_id=batch.pk)
        assert trace_values(project) == reference, f"arrival order {order}"
        assert Span.objects.filter(project=project).count() == expected(stem)["span_count"]


def test_it_names_the_root_only_once_the_root_has_arrived(project_a) -> None:
    want = expected(CAPTURE)
    request = request_of(CAPTURE)
    first, second, last = three_parts(CAPTURE)
    assert root_span_id(CAPTURE) in last

    accept_and_process(project_a, subset(request, first))
    trace = Trace.objects.get(project=project_a)
    assert (trace.root_span_name, trace.root_span_id) == ("", "")
    assert trace.span_count == len(first)
    # Without the root, the service still comes from the spans that are there.
    assert trace.service_name == "otel-openai-v2-multiagent"

    accept_and_process(project_a, subset(request, second))
    trace.refresh_from_db()
    assert (trace.root_span_name, trace.root_span_id) == ("", "")
    assert trace.span_count == len(first) + len(second)

    accept_and_process(project_a, subset(request, last))
    trace.refresh_from_db()
    assert trace.root_span_name == want["traces"][0]["root_span_name"]
    assert trace.root_span_id == root_span_id(CAPTURE)
    assert trace.span_count == want["span_count"]
    assert trace.start_time_unix_nano == min(int(s["start_time_unix_nano"]) for s in want["spans"])
    assert trace.end_time_unix_nano == max(int(s["end_time_unix_nano"]) for s in want["spans"])


# --- Recovery --------------------------------------------------------------------------------


def ingest_queue_size() -> int:
    """Messages waiting in the configured broker's ingest queue (no worker runs in these tests)."""
    return broker_queue_size(Queues.INGEST)


def _age(batch: IngestBatch, **fields: Any) -> None:
    IngestBatch.objects.filter(pk=batch.pk).update(**fields)


def test_it_requeues_a_pending_batch_whose_message_was_lost(project_a) -> None:
    old = timezone.now() - timedelta(seconds=settings.OCTOTRACE_BATCH_STUCK_SECONDS + 60)
    stuck = accept(project_a, corpus_protobuf(CAPTURE))
    fresh = accept(project_a, corpus_protobuf(CAPTURE))
    _age(stuck, enqueued_at=old)
    fresh_enqueued_at = IngestBatch.objects.get(pk=fresh.pk).enqueued_at
    before = timezone.now()
    queued = ingest_queue_size()

    assert batches.batches_requeue_stuck(kind=ingest.BATCHES) == 1

    assert ingest_queue_size() == queued + 1

    stuck.refresh_from_db()
    assert stuck.enqueued_at >= before
    assert stuck.status == IngestBatch.Status.PENDING
    assert IngestBatch.objects.get(pk=fresh.pk).enqueued_at == fresh_enqueued_at
    # Just re-enqueued: a second sweep right away leaves it alone.
    assert batches.batches_requeue_stuck(kind=ingest.BATCHES) == 0


def test_it_requeues_a_batch_whose_worker_died(project_a) -> None:
    old = timezone.now() - timedelta(seconds=settings.OCTOTRACE_BATCH_STUCK_SECONDS + 60)
    dead = accept(project_a, corpus_protobuf(CAPTURE))
    _age(dead, status=IngestBatch.Status.PROCESSING, started_at=old, enqueued_at=old, attempts=1)
    before = timezone.now()
    queued = ingest_queue_size()

    assert batches.batches_requeue_stuck(kind=ingest.BATCHES) == 1

    assert ingest_queue_size() == queued + 1
    dead.refresh_from_db()
    assert dead.enqueued_at >= before
    # The next claim finishes it.
    ingest.batch_process(batch_id=dead.pk)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == (IngestBatch.Status.DONE, 2)
    assert Span.objects.filter(project=project_a).count() == 14


def test_it_leaves_batches_that_are_being_worked_on_or_finished(project_a) -> None:
    old = timezone.now() - timedelta(seconds=settings.OCTOTRACE_BATCH_STUCK_SECONDS + 60)
    busy = accept(project_a, corpus_protobuf(CAPTURE))
    done = accept_and_process(project_a, corpus_protobuf(CAPTURE))
    failed = accept(project_a, corpus_protobuf(CAPTURE))
    batches.batch_mark_failed(kind=ingest.BATCHES, batch_id=failed.pk, error="boom")
    # A worker claimed this one recently, though its message is old.
    _age(busy, status=IngestBatch.Status.PROCESSING, started_at=timezone.now(), enqueued_at=old)
    _age(done, enqueued_at=old, started_at=old)
    _age(failed, enqueued_at=old, started_at=old)
    queued = ingest_queue_size()

    assert batches.batches_requeue_stuck(kind=ingest.BATCHES) == 0

    assert ingest_queue_size() == queued
    assert IngestBatch.objects.get(pk=done.pk).enqueued_at == old
    assert IngestBatch.objects.get(pk=busy.pk).enqueued_at == old


def test_it_marks_an_undecodable_batch_failed_and_keeps_its_body(project_a) -> None:
    garbage = b"\xff\xfe this is not protobuf \x00\x01\x02"
    batch = IngestBatch.objects.create(
        project=project_a, body=garbage, body_size=len(garbage), content_type=otlp.PROTOBUF, span_count=1
    )

    assert ingest.batch_process(batch_id=batch.pk) is None

    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.FAILED
    assert "not a valid ExportTraceServiceRequest" in batch.error
    assert bytes(batch.body) == garbage
    assert batch.body_purged_at is None
    assert not Span.objects.exists()


def test_it_marks_a_batch_with_broken_gzip_failed(project_a) -> None:
    body = gzip.compress(corpus_protobuf(CAPTURE))[:200]
    batch = IngestBatch.objects.create(
        project=project_a, body=body, content_type=otlp.PROTOBUF, content_encoding="gzip", span_count=14
    )
    ingest.batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.FAILED
    assert "gzip" in batch.error
    assert bytes(batch.body) == body


def test_it_gives_up_after_too_many_attempts(project_a) -> None:
    batch = accept(project_a, corpus_protobuf(CAPTURE))
    _age(batch, status=IngestBatch.Status.PROCESSING, attempts=settings.OCTOTRACE_BATCH_MAX_ATTEMPTS)

    assert ingest.batch_process(batch_id=batch.pk) is None

    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.FAILED
    assert batch.error == f"gave up after {settings.OCTOTRACE_BATCH_MAX_ATTEMPTS} attempts"
    assert batch.attempts == settings.OCTOTRACE_BATCH_MAX_ATTEMPTS
    assert bytes(batch.body) == corpus_protobuf(CAPTURE)
    assert not Span.objects.exists()


def test_it_processes_a_batch_on_its_last_allowed_attempt(project_a) -> None:
    batch = accept(project_a, corpus_protobuf(CAPTURE))
    _age(batch, attempts=settings.OCTOTRACE_BATCH_MAX_ATTEMPTS - 1)
    ingest.batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (IngestBatch.Status.DONE, settings.OCTOTRACE_BATCH_MAX_ATTEMPTS)


def test_it_ignores_an_unknown_batch_id(db) -> None:
    assert ingest.batch_process(batch_id=987654321) is None


def test_it_skips_a_span_with_a_wrong_size_id_and_stores_the_others(project_a) -> None:
    request = request_of(CAPTURE)
    bad = request.resource_spans[0].scope_spans[0].spans[0]
    bad_name = bad.name
    bad_id = bad.span_id.hex()
    bad.span_id = b"\x01\x02\x03\x04\x05\x06\x07"

    batch = accept_and_process(project_a, request.SerializeToString())

    assert batch.status == IngestBatch.Status.DONE
    assert batch.error.startswith("1 span(s) not stored: ")
    assert repr(bad_name) in batch.error
    assert "wrong size" in batch.error
    stored = set(Span.objects.filter(project=project_a).values_list("span_id", flat=True))
    assert len(stored) == 13
    assert bad_id not in stored
    assert Trace.objects.get(project=project_a).span_count == 13


def test_it_skips_a_span_with_a_wrong_size_trace_id(project_a) -> None:
    request = request_of(CAPTURE)
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01" * 15
    result_batch = accept_and_process(project_a, request.SerializeToString())
    assert result_batch.error.startswith("1 span(s) not stored")
    assert Span.objects.filter(project=project_a).count() == 13


# --- Raw body retention ----------------------------------------------------------------------


def test_it_purges_raw_bodies_of_old_done_batches_only(project_a) -> None:
    hours = settings.OCTOTRACE_RAW_RETENTION_HOURS
    long_ago = timezone.now() - timedelta(hours=hours, minutes=5)
    body = corpus_protobuf(CAPTURE)
    old_done = accept_and_process(project_a, body)
    recent_done = accept_and_process(project_a, body)
    old_failed = accept(project_a, body)
    batches.batch_mark_failed(kind=ingest.BATCHES, batch_id=old_failed.pk, error="boom")
    pending = accept(project_a, body)
    _age(old_done, processed_at=long_ago)
    _age(old_failed, processed_at=long_ago)
    _age(pending, received_at=long_ago, enqueued_at=long_ago)

    assert batches.batches_purge(kind=ingest.BATCHES) == 1

    old_done.refresh_from_db()
    assert bytes(old_done.body) == b""
    assert old_done.body_purged_at is not None
    assert old_done.body_size == len(body)
    for kept in (recent_done, old_failed, pending):
        kept.refresh_from_db()
        assert bytes(kept.body) == body, kept.status
        assert kept.body_purged_at is None
    # Purging again finds nothing new.
    assert batches.batches_purge(kind=ingest.BATCHES) == 0


def test_it_drops_the_body_at_processing_time_when_retention_is_zero(project_a, settings) -> None:
    settings.OCTOTRACE_RAW_RETENTION_HOURS = 0
    batch = accept_and_process(project_a, corpus_protobuf(CAPTURE))
    assert batch.status == IngestBatch.Status.DONE
    assert bytes(batch.body) == b""
    assert batch.body_purged_at == batch.processed_at
    assert Span.objects.filter(project=project_a).count() == 14


def test_it_keeps_a_failed_body_when_retention_is_zero(project_a, settings) -> None:
    settings.OCTOTRACE_RAW_RETENTION_HOURS = 0
    batch = IngestBatch.objects.create(project=project_a, body=b"\xffjunk", content_type=otlp.PROTOBUF)
    ingest.batch_process(batch_id=batch.pk)
    assert batches.batches_purge(kind=ingest.BATCHES) == 0
    batch.refresh_from_db()
    assert (batch.status, bytes(batch.body)) == (IngestBatch.Status.FAILED, b"\xffjunk")


def test_it_does_not_replay_a_purged_batch(project_a) -> None:
    batch = accept_and_process(project_a, corpus_protobuf(CAPTURE))
    _age(batch, processed_at=timezone.now() - timedelta(hours=settings.OCTOTRACE_RAW_RETENTION_HOURS + 1))
    batches.batches_purge(kind=ingest.BATCHES)

    assert ingest.batch_replay(batch_id=batch.pk, inline=True) is None

    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    assert not ingest.batches_for_replay(project=project_a).exists()


# --- The task --------------------------------------------------------------------------------


def test_the_task_processes_a_batch(project_a) -> None:
    batch = accept(project_a, corpus_protobuf(CAPTURE))
    process_batch.run(batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    assert Span.objects.filter(project=project_a).count() == 14
    assert Trace.objects.get(project=project_a).root_span_name == "invoke_workflow research_report"


def test_the_task_called_like_a_function_processes_a_batch(project_a) -> None:
    batch = accept(project_a, corpus_protobuf(CAPTURE))
    process_batch(batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    assert Span.objects.filter(project=project_a).count() == 14


def test_the_task_records_an_undecodable_body_without_raising(project_a) -> None:
    batch = IngestBatch.objects.create(project=project_a, body=b"\xffjunk", content_type=otlp.PROTOBUF)
    process_batch.run(batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.FAILED
    assert batch.error != ""


# --- Span status -----------------------------------------------------------------------------


def test_it_marks_a_trace_with_failed_spans_as_error(project_a) -> None:
    request = request_of(CAPTURE)
    failing = [span for ss in request.resource_spans[0].scope_spans for span in ss.spans][:2]
    for span in failing:
        span.status.code = 2
        span.status.message = "429 Too Many Requests"

    accept_and_process(project_a, request.SerializeToString())

    trace = Trace.objects.get(project=project_a)
    assert trace.status == "error"
    assert trace.error_count == 2
    assert trace.span_count == 14
    errors = Span.objects.filter(project=project_a, status_code=2)
    assert sorted(errors.values_list("span_id", flat=True)) == sorted(s.span_id.hex() for s in failing)
    assert set(errors.values_list("status_message", flat=True)) == {"429 Too Many Requests"}


def test_it_does_not_count_ok_status_as_an_error(project_a) -> None:
    # The traceloop capture sets status OK (1) on some spans.
    stem = "traceloop-openai-multiagent-content"
    assert {s["status_code"] for s in expected(stem)["spans"]} == {0, 1}
    accept_and_process(project_a, corpus_protobuf(stem))
    trace = Trace.objects.get(project=project_a)
    assert (trace.status, trace.error_count) == ("ok", 0)


def test_a_late_failed_span_turns_a_trace_to_error(project_a) -> None:
    request = request_of(CAPTURE)
    ids = [s["span_id"] for s in expected(CAPTURE)["spans"]]
    accept_and_process(project_a, subset(request, ids[:7]))
    assert Trace.objects.get(project=project_a).status == "ok"

    late = ExportTraceServiceRequest()
    late.ParseFromString(subset(request, ids[7:]))
    late.resource_spans[0].scope_spans[0].spans[0].status.code = 2
    accept_and_process(project_a, late.SerializeToString())

    trace = Trace.objects.get(project=project_a)
    assert (trace.status, trace.error_count, trace.span_count) == ("error", 1, 14)
