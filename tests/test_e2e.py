"""End to end: OTLP bodies posted over HTTP to a live server, ingested by a real Celery worker
process on the configured broker into the configured database (PostgreSQL and Redis in CI)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from tests.factories import CORPUS, CORPUS_CAPTURES, broker_queue_size, corpus_bytes, wait_until_processed
from tracer import batches, ingest, otlp
from tracer.celery import Queues
from tracer.models import IngestBatch, Span, Trace

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_live_server_and_a_worker_ingest_every_corpus_capture(live_server, worker, project_a, key_a):
    _, secret = key_a
    for _, body_file, encoding in CORPUS_CAPTURES:
        headers = {"Content-Type": otlp.PROTOBUF, "Authorization": f"Bearer {secret}"}
        if encoding:
            headers["Content-Encoding"] = encoding
        response = requests.post(
            f"{live_server.url}/v1/traces", data=corpus_bytes(body_file), headers=headers, timeout=30
        )
        assert response.status_code == 200, response.content

    wait_until_processed(project_a)

    expected_spans = 0
    for stem, _, _ in CORPUS_CAPTURES:
        expected = json.loads((CORPUS / f"{stem}.expected.json").read_text())
        expected_spans += expected["span_count"]
        for trace in expected["traces"]:
            stored = Trace.objects.get(project=project_a, trace_id=trace["trace_id"])
            assert stored.span_count == trace["span_count"]
            assert stored.root_span_name == trace["root_span_name"]
            ids = set(
                Span.objects.filter(project=project_a, trace_id=trace["trace_id"]).values_list("span_id", flat=True)
            )
            assert ids == {s["span_id"] for s in expected["spans"] if s["trace_id"] == trace["trace_id"]}
    assert Span.objects.filter(project=project_a).count() == expected_spans
    assert IngestBatch.objects.filter(project=project_a, status=IngestBatch.Status.DONE).count() == len(CORPUS_CAPTURES)


def test_a_batch_whose_message_was_lost_is_swept_to_the_worker(live_server, worker, project_a, project_b, key_b):
    body = corpus_bytes("traceloop-openai-multiagent-nocontent.pb")
    long_ago = timezone.now() - timedelta(hours=1)
    # Stored but never enqueued: what a broker outage between commit and enqueue leaves behind.
    lost = IngestBatch.objects.create(
        project=project_a,
        body=body,
        body_size=len(body),
        content_type=otlp.PROTOBUF,
        span_count=14,
        received_at=long_ago,
        enqueued_at=long_ago,
    )
    # The worker is up and has consumed its queue since: a batch posted after the lost one was
    # stored is processed, and nothing is left waiting in the broker ...
    probe = corpus_bytes("otel-openai-v2-multiagent-content.pb")
    headers = {"Content-Type": otlp.PROTOBUF, "Authorization": f"Bearer {key_b[1]}"}
    response = requests.post(f"{live_server.url}/v1/traces", data=probe, headers=headers, timeout=30)
    assert response.status_code == 200, response.content
    wait_until_processed(project_b)
    assert broker_queue_size(Queues.INGEST) == 0
    # ... yet no worker ever claimed the lost batch: only the sweeper can bring it back.
    lost.refresh_from_db()
    assert (lost.status, lost.attempts, lost.started_at) == (IngestBatch.Status.PENDING, 0, None)
    assert not Span.objects.filter(project=project_a).exists()

    assert batches.batches_requeue_stuck(kind=ingest.BATCHES) == 1

    wait_until_processed(project_a)
    lost.refresh_from_db()
    assert (lost.status, lost.attempts) == (IngestBatch.Status.DONE, 1)
    assert Span.objects.filter(project=project_a).count() == 14
