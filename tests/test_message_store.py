"""The message store (tracer/messages.py): captured messages stored once per project, and every
reader (the span API, the span drawer, the waste report) given the attributes exactly as sent."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard import selectors
from reports.waste import waste_compute
from tests.factories import (
    CORPUS_CAPTURES,
    corpus_protobuf,
    ingest_spans,
    otlp_body,
    price,
    session_spans,
    sid,
    tid,
)
from tracer import ingest, messages, otlp
from tracer.models import ApiKey, Message, MessageChain, Project, Span, Trace


@pytest.fixture(autouse=True)
def store_on(settings) -> None:
    """The store is off by default (config/settings.py says why); these tests turn it on, and those
    that compare with the store off turn it off again."""
    settings.OCTOTRACE_MESSAGE_STORE = True


def bearer(key: tuple[ApiKey, str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key[1]}"}


def sent_spans(body: bytes) -> list[otlp.SpanRecord]:
    request = otlp.parse_request(body, content_type=otlp.PROTOBUF)
    return [record for record in otlp.iter_spans(request) if not isinstance(record, str)]


def ingest_body(project: Project, body: bytes) -> None:
    batch = ingest.batch_accept(project=project, body=body, content_type=otlp.PROTOBUF)
    assert batch is not None
    assert ingest.batch_process(batch_id=batch.pk) is not None


def api_span(client, key, record: otlp.SpanRecord) -> dict[str, Any]:
    response = client.get(f"/api/v1/traces/{record.trace_id}/spans/{record.span_id}", **bearer(key))
    assert response.status_code == 200, response.content
    return response.json()["span"]


def assert_as_sent(client, key, records: list[otlp.SpanRecord]) -> None:
    for record in records:
        got = api_span(client, key, record)
        assert got["attributes"] == record.attributes, record.name
        assert got["resource_attributes"] == record.resource_attributes
        assert got["events"] == record.events
        assert got["links"] == record.links
        assert (got["trace_id"], got["span_id"], got["name"]) == (record.trace_id, record.span_id, record.name)


@pytest.mark.parametrize("stem", [capture for capture, _, _ in CORPUS_CAPTURES])
def test_the_api_returns_every_fixture_span_as_sent(client, project_a, key_a, stem) -> None:
    body = corpus_protobuf(stem)

    ingest_body(project_a, body)

    assert_as_sent(client, key_a, sent_spans(body))


@pytest.mark.parametrize(
    "stem", [stem for stem, _, _ in CORPUS_CAPTURES if "-nocontent" not in stem and "legacy" not in stem]
)
def test_captured_content_leaves_the_span_rows(project_a, stem) -> None:
    ingest_body(project_a, corpus_protobuf(stem))

    assert Message.objects.filter(project=project_a).exists()
    for attributes in Span.objects.filter(project=project_a).values_list("attributes", flat=True):
        assert not set(attributes) & {"gen_ai.input.messages", "gen_ai.output.messages"}
        assert not any(key.startswith("llm.input_messages.") for key in attributes)


def test_a_long_session_round_trips_and_stores_each_message_once(client, project_a, key_a) -> None:
    spans = session_spans(60)
    body = otlp_body(*spans)

    ingest_body(project_a, body)

    assert_as_sent(client, key_a, sent_spans(body))
    # 60 questions and 60 answers, each stored once in the JSON form and once as flattened
    # OpenInference keys and as event attributes (except the last answer: never re-sent), plus the
    # system instructions.
    stored = Message.objects.filter(project=project_a).count()
    assert stored == 120 + 119 + 119 + 1
    # The span rows hold references, not the conversation: far less than the text re-sent.
    longest = Span.objects.get(project=project_a, span_id=sid(60))
    assert len(str(longest.attributes)) < 2000


def test_replaying_a_batch_and_a_second_copy_change_nothing(client, project_a, key_a) -> None:
    body = otlp_body(*session_spans(5))
    ingest_body(project_a, body)
    counts = Message.objects.count(), MessageChain.objects.count()

    ingest_body(project_a, body)
    batch = ingest.batches_for_replay(project=project_a).first()
    ingest.batch_replay(batch_id=batch.pk, inline=True)

    assert (Message.objects.count(), MessageChain.objects.count()) == counts
    assert_as_sent(client, key_a, sent_spans(body))


def test_projects_do_not_share_messages(client, project_a, project_b, key_b) -> None:
    body = otlp_body(*session_spans(3))
    ingest_body(project_a, body)
    ingest_body(project_b, body)

    assert Message.objects.filter(project=project_a).count() == Message.objects.filter(project=project_b).count()
    assert_as_sent(client, key_b, sent_spans(body))


@pytest.mark.parametrize(
    "value",
    [
        '[{"role": "user", "content": "hi"}]',
        '[{"role":"user","content":"h\\u00e9"}]',
        '[{"role":"user","content":"hé"}]',
        '[ {"role": "user"} ]',
        '[{"a": 1, "a": 2}]',
        '[{"role": "user"}, "not a message"]',
        "[{not json",
        "plain text",
        "[]",
        '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}',
        '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
        '{"messages": []}',
        '{"messages": "text"}',
    ],
)
def test_any_string_comes_back_byte_for_byte(client, project_a, key_a, value: str) -> None:
    body = otlp_body(*session_spans(1))
    request = otlp.parse_request(body, content_type=otlp.PROTOBUF)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for kv in span.attributes:
        if kv.key in ("gen_ai.input.messages", "input.value"):
            kv.value.string_value = value
    body = request.SerializeToString()

    ingest_body(project_a, body)

    assert_as_sent(client, key_a, sent_spans(body))


def test_a_sender_attribute_named_like_the_marker_comes_back(client, project_a, key_a) -> None:
    spans = session_spans(2)
    for span in spans:
        kv = span.attributes.add(key=messages.MARKER)
        kv.value.string_value = "mine"
        event = span.events.add(name="other")
        ekv = event.attributes.add(key=messages.MARKER)
        ekv.value.string_value = "also mine"
    body = otlp_body(*spans)

    ingest_body(project_a, body)

    assert_as_sent(client, key_a, sent_spans(body))


def test_with_the_store_off_spans_keep_the_text(settings, project_a) -> None:
    settings.OCTOTRACE_MESSAGE_STORE = False

    ingest_spans(project_a, *session_spans(2, trace=tid(2)))

    assert not Message.objects.exists()
    assert "gen_ai.input.messages" in Span.objects.filter(project=project_a).first().attributes


def test_the_span_api_hides_other_projects_spans(client, project_a, key_b) -> None:
    ingest_spans(project_a, *session_spans(1, trace=tid(1)))

    response = client.get(f"/api/v1/traces/{tid(1)}/spans/{sid(1)}", **bearer(key_b))

    assert response.status_code == 404


def test_restoring_many_spans_takes_two_queries(django_assert_num_queries, project_a) -> None:
    ingest_spans(project_a, *session_spans(20))
    spans = list(Span.objects.filter(project=project_a))

    with django_assert_num_queries(2):
        messages.spans_restore(project_id=project_a.pk, spans=spans)

    assert all("gen_ai.input.messages" in span.attributes for span in spans)


def test_the_span_drawer_shows_the_text_as_sent(project_a) -> None:
    body = otlp_body(*session_spans(3))
    ingest_body(project_a, body)

    for record in sent_spans(body):
        span = selectors.span_detail(project=project_a, trace_id=record.trace_id, span_id=record.span_id)
        assert (span.attributes, span.events) == (record.attributes, record.events)


def test_the_waste_report_reads_the_same_with_the_store_on_or_off(settings, project_a, project_b) -> None:
    price(input="2", cached_input="0.5", output="10", pattern="gpt-4o-mini")
    ingest_spans(project_a, *session_spans(8))
    settings.OCTOTRACE_MESSAGE_STORE = False
    ingest_spans(project_b, *session_spans(8))

    on = waste_compute(project=project_a, traces=Trace.objects.filter(project=project_a))
    off = waste_compute(project=project_b, traces=Trace.objects.filter(project=project_b))

    assert on == off
    assert on["totals"]["resent_tokens"] > 0
