"""Fuzzing the OTLP receiver (tracer/views.py, tracer/otlp.py): the view `/v1/traces` resolves to.

10,000 bodies in all: random bytes; real captures and small requests mutated byte by byte and
tree by tree; OTLP-shaped documents with every field of the wrong type, length or size; in protobuf
and JSON, plain and gzip, with the gzip itself corrupted. Each must be answered 2xx or 4xx (an
exception fails the test too), a refused body stores nothing, an accepted one stores one batch,
and every batch stored decodes with the span count it was stored with.

Deterministic (derandomize, a fixed seed, no example database): a failure reproduces on every run.
About 60 s of CPU; 112 s of wall time on two cores shared with five other test runs (docs/security.md).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db.models.signals import post_save
from django.test import RequestFactory
from django.urls import resolve
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.factories import chat, corpus_bytes, otlp_body, otlp_span, sid, spans_body, tid
from tracer import otlp
from tracer.models import IngestBatch
from tracer.projects import apikey_create, project_create

URL = "/v1/traces"
# Kept small so that gzip bombs and oversized bodies are cheap to make and the 413 paths are hit.
MAX_BODY = 64 * 1024
FUZZ = hypothesis_settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    # Generate only: no example database to replay, and shrinking happens only after a failure anyway.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SEED = 15  # issue 15

# --- Seeds: valid requests to mutate --------------------------------------------------------------

PROTOBUF_SEEDS = [
    spans_body(3),
    otlp_body(
        otlp_span(sid(1), trace=tid(7), name="crew"),
        otlp_span(sid(2), sid(1), trace=tid(7), attrs=chat(input=1200, output=80)),
        otlp_span(sid(3), sid(2), trace=tid(7), error=True, attrs={"flag": True, "ratio": 0.5, "n": 3}),
    ),
    corpus_bytes("otel-openai-v2-legacy-multiagent-content.pb"),
]
JSON_SEEDS = [json.loads(corpus_bytes("otel-openai-v2-legacy-multiagent-content.json"))]
JSON_SEEDS.append(
    {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "fuzz"},
                        "spans": [
                            {
                                "traceId": tid(9),
                                "spanId": sid(1),
                                "name": "run",
                                "kind": 1,
                                "startTimeUnixNano": "1767225600000000000",
                                "endTimeUnixNano": "1767225601000000000",
                                "attributes": [
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                                    {"key": "tags", "value": {"arrayValue": {"values": [{"boolValue": True}]}}},
                                    {"key": "blob", "value": {"bytesValue": "AAEC"}},
                                ],
                                "events": [{"timeUnixNano": "1", "name": "e", "attributes": []}],
                                "links": [{"traceId": tid(8), "spanId": sid(4)}],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
)

OTLP_KEYS = [
    "resourceSpans",
    "scopeSpans",
    "spans",
    "resource",
    "scope",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "bytesValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "events",
    "links",
    "status",
    "code",
    "message",
    "traceState",
    "flags",
    "timeUnixNano",
    "droppedAttributesCount",
]

# --- Strategies -----------------------------------------------------------------------------------
# Hypothesis draws the shape (which generator, which seed, which encoding) and plain `random`, seeded
# by it, builds the body: drawing every field through Hypothesis cost ten times the request.

ODD_SCALARS = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    1.5,
    float("nan"),
    float("inf"),
    -0.0,
    "",
    "0",
    "-5",
    "1e309",
    "x",
    "ff" * 8,
    "ff" * 16,
    "FF" * 8,
    "zz" * 8,
    "AAEC",
    "😀",
    "\u0000",
    "18446744073709551616",
]


def _odd_json(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type: a list or an object (OTLP keys) sometimes, down to depth 3."""
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return [_odd_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    if depth < 3 and roll < 0.3:
        return {rng.choice(OTLP_KEYS): _odd_json(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.choice(ODD_SCALARS)


def _or_odd(rng: random.Random, right: Callable[[], Any]) -> Any:
    """Mostly a value of the right type, else anything."""
    return right() if rng.random() < 0.8 else _odd_json(rng)


def _hex(rng: random.Random, size: int) -> str:
    return rng.randbytes(rng.choice([size, size, size, 0, size - 1, size + 1])).hex()


def _int_text(rng: random.Random) -> Any:
    value = rng.choice([0, 1, -1, 2**63 - 1, 2**64 - 1, 2**64, 1_767_225_600_000_000_000])
    return str(value) if rng.random() < 0.7 else value


def _json_any_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return {"stringValue": _or_odd(rng, lambda: rng.choice(ODD_TEXT))}
    if kind == 1:
        return {"intValue": _or_odd(rng, lambda: _int_text(rng))}
    if kind == 2:
        return {"doubleValue": _or_odd(rng, lambda: rng.choice([0.5, 1e308, "NaN", "Infinity", "-Infinity"]))}
    if kind == 3:
        return {"boolValue": _or_odd(rng, lambda: rng.random() < 0.5)}
    if kind == 4:
        return {"bytesValue": _or_odd(rng, lambda: base64.b64encode(rng.randbytes(4)).decode())}
    if kind == 5:
        return _odd_json(rng)
    if kind == 6:
        return {"arrayValue": {"values": [_json_any_value(rng, depth + 1) for _ in range(rng.randrange(3))]}}
    pairs = [{"key": rng.choice(ODD_TEXT), "value": _json_any_value(rng, depth + 1)} for _ in range(rng.randrange(3))]
    return {"kvlistValue": {"values": pairs}}


def _json_attributes(rng: random.Random) -> Any:
    return _or_odd(
        rng,
        lambda: [
            {"key": _or_odd(rng, lambda: rng.choice(ODD_TEXT)), "value": _json_any_value(rng)}
            for _ in range(rng.randrange(4))
        ],
    )


def _json_span(rng: random.Random) -> dict[str, Any]:
    fields = {
        "traceId": lambda: _or_odd(rng, lambda: _hex(rng, 16)),
        "spanId": lambda: _or_odd(rng, lambda: _hex(rng, 8)),
        "parentSpanId": lambda: _or_odd(rng, lambda: _hex(rng, 8)),
        "name": lambda: _or_odd(rng, lambda: rng.choice(ODD_TEXT)),
        "kind": lambda: _or_odd(rng, lambda: rng.choice([0, 1, 3, 99, "SPAN_KIND_CLIENT", "3"])),
        "startTimeUnixNano": lambda: _or_odd(rng, lambda: _int_text(rng)),
        "endTimeUnixNano": lambda: _or_odd(rng, lambda: _int_text(rng)),
        "attributes": lambda: _json_attributes(rng),
        "events": lambda: [
            {"timeUnixNano": _int_text(rng), "name": rng.choice(ODD_TEXT), "attributes": _json_attributes(rng)}
            for _ in range(rng.randrange(3))
        ],
        "links": lambda: _or_odd(
            rng, lambda: [{"traceId": _hex(rng, 16), "spanId": _hex(rng, 8)} for _ in range(rng.randrange(3))]
        ),
        "status": lambda: _or_odd(
            rng, lambda: {"code": _or_odd(rng, lambda: rng.choice([0, 1, 2, 7])), "message": "m"}
        ),
        "flags": lambda: _or_odd(rng, lambda: rng.choice([0, 1, 2**32 - 1, 2**32])),
        "traceState": lambda: _or_odd(rng, lambda: "k=v"),
    }
    # Each field present at random, so required ones go missing too.
    return {name: make() for name, make in fields.items() if rng.random() < 0.8}


def random_document(rng_seed: int) -> dict[str, Any]:
    """An OTLP/JSON traces document whose every level is sometimes of the wrong type."""
    rng = random.Random(rng_seed)

    def scope_spans() -> Any:
        return {
            "scope": _or_odd(rng, lambda: {"name": rng.choice(ODD_TEXT)}),
            "spans": _or_odd(rng, lambda: [_or_odd(rng, lambda: _json_span(rng)) for _ in range(rng.randrange(5))]),
        }

    def resource_spans() -> Any:
        return {
            "resource": _or_odd(rng, lambda: {"attributes": _json_attributes(rng)}),
            "scopeSpans": _or_odd(rng, lambda: [_or_odd(rng, scope_spans) for _ in range(rng.randrange(3))]),
        }

    return {"resourceSpans": _or_odd(rng, lambda: [_or_odd(rng, resource_spans) for _ in range(rng.randrange(3))])}


json_documents = st.builds(random_document, st.integers(0, 2**32 - 1))
json_values = st.builds(lambda rng_seed: _odd_json(random.Random(rng_seed)), st.integers(0, 2**32 - 1))


ODD_TEXT = ["", "a", "é", "\x00", "😀" * 3, "x" * 300, "gen_ai.usage.input_tokens", "session.id", "\u202e"]


def _odd_bytes(rng: random.Random, right: int) -> bytes:
    """An id: mostly of the right size, often empty, short, long or all zero."""
    size = rng.choice([right, right, right, 0, 1, right - 1, right + 1, 32])
    return bytes(size) if rng.random() < 0.1 else rng.randbytes(size)


def _any_value(rng: random.Random, depth: int = 0) -> AnyValue:
    kind = rng.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return AnyValue(string_value=rng.choice(ODD_TEXT))
    if kind == 1:
        return AnyValue(int_value=rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)]))
    if kind == 2:
        return AnyValue(double_value=rng.choice([0.0, -0.0, 1e308, float("nan"), float("inf"), rng.random()]))
    if kind == 3:
        return AnyValue(bool_value=rng.random() < 0.5)
    if kind == 4:
        return AnyValue(bytes_value=rng.randbytes(rng.randrange(12)))
    if kind == 5:
        return AnyValue()
    if kind == 6:
        return AnyValue(array_value=ArrayValue(values=[_any_value(rng, depth + 1) for _ in range(rng.randrange(4))]))
    pairs = [KeyValue(key=rng.choice(ODD_TEXT), value=_any_value(rng, depth + 1)) for _ in range(rng.randrange(4))]
    return AnyValue(kvlist_value=KeyValueList(values=pairs))


def _attributes(rng: random.Random) -> list[KeyValue]:
    return [KeyValue(key=rng.choice(ODD_TEXT), value=_any_value(rng)) for _ in range(rng.randrange(5))]


def _u64(rng: random.Random) -> int:
    return rng.choice([0, 1, 2**63, 2**64 - 1, 1_767_225_600_000_000_000 + rng.randrange(10**12)])


def _span(rng: random.Random) -> trace_pb2.Span:
    span = trace_pb2.Span(
        trace_id=_odd_bytes(rng, 16),
        span_id=_odd_bytes(rng, 8),
        parent_span_id=_odd_bytes(rng, 8) if rng.random() < 0.5 else b"",
        name=rng.choice(ODD_TEXT),
        kind=rng.choice([0, 1, 3, 5, 6, 2**31 - 1]),
        start_time_unix_nano=_u64(rng),
        end_time_unix_nano=_u64(rng),
        flags=rng.choice([0, 1, 2**32 - 1]),
        attributes=_attributes(rng),
        status=trace_pb2.Status(code=rng.choice([0, 1, 2, 3, 2**31 - 1]), message=rng.choice(ODD_TEXT)),
    )
    for _ in range(rng.randrange(3)):
        span.events.add(time_unix_nano=_u64(rng), name=rng.choice(ODD_TEXT), attributes=_attributes(rng))
    for _ in range(rng.randrange(3)):
        span.links.add(trace_id=_odd_bytes(rng, 16), span_id=_odd_bytes(rng, 8), attributes=_attributes(rng))
    return span


def random_request(rng_seed: int) -> bytes:
    """A well-formed ExportTraceServiceRequest whose fields hold anything their types allow: ids of
    every size, extreme integers and floats, odd text, nested values. Plain `random`, seeded by
    Hypothesis: drawing each field through Hypothesis cost ten times the request."""
    rng = random.Random(rng_seed)
    request = ExportTraceServiceRequest()
    for _ in range(rng.randrange(3)):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(_attributes(rng))
        for _ in range(rng.randrange(3)):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = rng.choice(ODD_TEXT)
            scope_spans.spans.extend(_span(rng) for _ in range(rng.randrange(5)))
    return request.SerializeToString()


protobuf_requests = st.builds(random_request, st.integers(0, 2**32 - 1))

EDITS = ("flip", "set", "insert", "delete", "truncate", "splice", "repeat")


def mutate(seeds: list[bytes], rng_seed: int) -> bytes:
    """A seed with a few byte-level edits: flips, overwrites, insertions, deletions, truncation,
    splices of another seed, repeated chunks. Plain `random` seeded by Hypothesis: a draw per edit
    through Hypothesis would cost more than the request."""
    rng = random.Random(rng_seed)
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        size = len(data)
        where = rng.randint(0, max(size - 1, 0))
        edit = rng.choice(EDITS)
        if edit == "flip" and size:
            data[where] ^= 1 << rng.randint(0, 7)
        elif edit == "set" and size:
            data[where] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x22, 0x7B, 0x5B, 0x5D, 0x7D])
        elif edit == "insert":
            data[where:where] = rng.randbytes(rng.randint(1, 12))
        elif edit == "delete":
            del data[where : where + rng.randint(1, 64)]
        elif edit == "truncate":
            del data[where:]
        elif edit == "splice":
            other = rng.choice(seeds)
            start = rng.randint(0, max(len(other) - 1, 0))
            data[where:] = other[start : start + rng.randint(1, 400)]
        elif edit == "repeat" and size:
            data[where:where] = bytes(data[where : where + rng.randint(1, 200)]) * rng.randint(2, 20)
    return bytes(data)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(mutate, st.just(seeds), st.integers(0, 2**32 - 1))


def tree_mutated(document: Any, rng_seed: int) -> Any:
    """The document with one node, at a random depth, replaced by a random JSON value or span."""
    rng = random.Random(rng_seed)

    def replace(node: Any, depth: int) -> Any:
        if not isinstance(node, dict | list) or not node or rng.random() < 0.1 * depth:
            return _json_span(rng) if rng.random() < 0.3 else _odd_json(rng)
        if isinstance(node, dict):
            key = rng.choice(list(node))
            return {**node, key: replace(node[key], depth + 1)}
        index = rng.randrange(len(node))
        return [*node[:index], replace(node[index], depth + 1), *node[index + 1 :]]

    return replace(document, 0)


json_tree_mutations = st.builds(tree_mutated, st.sampled_from(JSON_SEEDS), st.integers(0, 2**32 - 1))


def json_text(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


deeply_nested = st.integers(100, 30_000).map(lambda depth: b'{"resourceSpans":' + b"[" * depth + b"]" * depth + b"}")
JSON_TEXT_SEEDS = [json_text(seed) for seed in JSON_SEEDS]


ENCODINGS = ("plain", "plain", "gzip", "gzip", "gzip-corrupt", "gzip-members", "bomb")


def encode(body: bytes, how: str, rng_seed: int) -> tuple[bytes, str]:
    """(body, Content-Encoding): plain, gzip, gzip corrupted, several gzip members, or a gzip bomb."""
    if how == "plain":
        return body, ""
    if how == "gzip":
        return gzip.compress(body, compresslevel=1), "gzip"
    if how == "gzip-members":
        return gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2 :]), "gzip"
    if how == "bomb":
        return gzip.compress(body + b"\0" * (MAX_BODY + rng_seed % 4096)), "gzip"
    return mutate([gzip.compress(body, compresslevel=1)], rng_seed), "gzip"


def maybe_gzipped(bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[bytes, str]]:
    return st.builds(encode, bodies, st.sampled_from(ENCODINGS), st.integers(0, 2**32 - 1))


# --- The checks -----------------------------------------------------------------------------------


@pytest.fixture
def receiver(db, settings) -> Iterator[Callable[[bytes, str, str], int]]:
    """Post a body; assert the answer is 2xx/4xx and that it stored one batch (2xx) or none."""
    settings.OCTOTRACE_MAX_BODY_BYTES = MAX_BODY
    # Every body must reach the decoder: no rate limit.
    settings.OCTOTRACE_RATE_INGEST_RPS = settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 0
    settings.OCTOTRACE_RATE_INGEST_SPANS_PER_S = settings.OCTOTRACE_RATE_KEY_INGEST_SPANS_PER_S = 0
    _, secret = apikey_create(project=project_create(name="Fuzz"))
    headers = {"Authorization": f"Bearer {secret}"}
    # The view that /v1/traces resolves to, called as Django calls it; the test client's middleware
    # would cost a third of the time and concern no decoding.
    factory, view = RequestFactory(), resolve(URL).func
    answered: Counter[int] = Counter()
    stored: list[int] = []

    def count(sender, instance, created, **kwargs) -> None:
        if created:
            stored.append(instance.pk)

    def post(body: bytes, content_type: str, encoding: str) -> int:
        stored.clear()
        request = factory.post(
            URL, data=body, content_type=content_type, headers={**headers, "Content-Encoding": encoding}
        )
        response = view(request)
        status = response.status_code
        answered[status] += 1
        assert 200 <= status < 300 or 400 <= status < 500, (status, response.content[:300])
        assert len(stored) == 0 if status >= 400 else len(stored) <= 1, (status, stored)
        return status

    post.answered = answered  # type: ignore[attr-defined]
    post_save.connect(count, sender=IngestBatch)
    request_log = logging.getLogger("django.request")
    level = request_log.level
    try:
        # The fuzzer's own 4xx answers would log thousands of warnings.
        request_log.setLevel(logging.ERROR)
        yield post
    finally:
        request_log.setLevel(level)
        post_save.disconnect(count, sender=IngestBatch)
    assert_every_batch_is_whole()
    print(f"answers: {dict(sorted(answered.items()))}, batches stored: {IngestBatch.objects.count()}")


def assert_every_batch_is_whole() -> None:
    for batch in IngestBatch.objects.all().iterator():
        body = bytes(batch.body)
        assert batch.body_size == len(body)
        data = otlp.decompress(body, encoding=batch.content_encoding, limit=MAX_BODY)
        request = otlp.parse_request(data, content_type=batch.content_type)
        assert otlp.count_spans(request) == batch.span_count > 0


# --- The fuzz tests: 4,000 + 4,000 + 2,000 bodies ------------------------------------------------
# Five bodies per Hypothesis example: the engine's own work per example costs about as much as a request.
PER_EXAMPLE = 5


def bodies_of(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE)


def test_protobuf_bodies_random_mutated_and_odd_get_2xx_or_4xx_and_whole_batches(receiver) -> None:
    bodies = st.one_of(st.binary(max_size=600), mutated(PROTOBUF_SEEDS), mutated(PROTOBUF_SEEDS), protobuf_requests)

    @seed(SEED)
    @hypothesis_settings(FUZZ, max_examples=4000 // PER_EXAMPLE)
    @given(bodies_of(maybe_gzipped(bodies)))
    def some(sent: list[tuple[bytes, str]]) -> None:
        for body, encoding in sent:
            receiver(body, otlp.PROTOBUF, encoding)

    some()
    assert receiver.answered.total() == 4000
    # Enough bodies got through the decoder to be stored, not only refused.
    assert receiver.answered[200] > 400, receiver.answered


def test_json_bodies_random_mutated_and_odd_get_2xx_or_4xx_and_whole_batches(receiver) -> None:
    bodies = st.one_of(
        st.binary(max_size=300),
        mutated(JSON_TEXT_SEEDS),
        json_tree_mutations.map(json_text),
        json_documents.map(json_text),
        json_values.map(json_text),
        deeply_nested,
    )
    content_types = st.sampled_from([otlp.JSON, "application/json; charset=utf-8"])

    @seed(SEED)
    @hypothesis_settings(FUZZ, max_examples=4000 // PER_EXAMPLE)
    @given(bodies_of(st.tuples(maybe_gzipped(bodies), content_types)))
    def some(sent: list[tuple[tuple[bytes, str], str]]) -> None:
        for (body, encoding), content_type in sent:
            receiver(body, content_type, encoding)

    some()
    assert receiver.answered.total() == 4000
    assert receiver.answered[200] > 200, receiver.answered


def test_bodies_sent_as_the_other_format_get_2xx_or_4xx_and_whole_batches(receiver) -> None:
    protobuf = st.sampled_from(PROTOBUF_SEEDS) | protobuf_requests
    documents = json_documents.map(json_text) | st.sampled_from(JSON_TEXT_SEEDS)
    crossed = st.tuples(maybe_gzipped(protobuf), st.just(otlp.JSON)) | st.tuples(
        maybe_gzipped(documents), st.just(otlp.PROTOBUF)
    )

    @seed(SEED)
    @hypothesis_settings(FUZZ, max_examples=2000 // PER_EXAMPLE)
    @given(bodies_of(crossed))
    def some(sent: list[tuple[tuple[bytes, str], str]]) -> None:
        for (body, encoding), content_type in sent:
            receiver(body, content_type, encoding)

    some()
    assert receiver.answered.total() == 2000


def test_a_truncated_gzip_stream_is_a_400_not_a_crash(receiver) -> None:
    assert receiver(gzip.compress(spans_body(2))[:-9], otlp.PROTOBUF, "gzip") == 400
    assert receiver(zlib.compress(spans_body(2)), otlp.PROTOBUF, "gzip") == 400
