"""Unit tests of tracer/otlp.py: the OTLP/HTTP wire formats, no database."""

from __future__ import annotations

import base64
import gzip
import json
import tracemalloc

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.factories import CORPUS_CAPTURES, corpus_bytes, corpus_protobuf, decode_status, gzip_bomb
from tracer import otlp

STEMS = [stem for stem, _, _ in CORPUS_CAPTURES]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
PARENT_ID = "00f067aa0ba902b7"


def json_request(**span_fields: object) -> dict:
    """A minimal OTLP/JSON document with one span; `span_fields` override or add span keys."""
    span = {"traceId": TRACE_ID, "spanId": SPAN_ID, "parentSpanId": PARENT_ID, "name": "op", "kind": 2}
    span.update(span_fields)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [{"scope": {"name": "scope", "version": "1.0"}, "spans": [span]}],
            }
        ]
    }


def parse_json(document: object) -> ExportTraceServiceRequest:
    return otlp.parse_request(json.dumps(document).encode(), content_type=otlp.JSON)


def one_span_request(span: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])


# --- Decoding the corpus ----------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_it_decodes_corpus_protobuf_bodies(stem: str) -> None:
    expected = json.loads(corpus_bytes(f"{stem}.expected.json"))

    request = otlp.parse_request(corpus_protobuf(stem), content_type=otlp.PROTOBUF)

    assert otlp.count_spans(request) == expected["span_count"]


@pytest.mark.parametrize("stem", STEMS)
def test_it_decodes_corpus_json_bodies_to_the_same_request_as_the_protobuf(stem: str) -> None:
    from_protobuf = otlp.parse_request(corpus_protobuf(stem), content_type=otlp.PROTOBUF)

    from_json = otlp.parse_request(corpus_bytes(f"{stem}.json"), content_type="application/json; charset=utf-8")

    assert otlp.count_spans(from_json) > 0
    assert from_json == from_protobuf


def test_it_decompresses_the_gzip_corpus_capture_to_its_protobuf() -> None:
    stem, body_file, encoding = next(c for c in CORPUS_CAPTURES if c[2] == "gzip")

    data = otlp.decompress(corpus_bytes(body_file), encoding=encoding, limit=16 * 1024 * 1024)

    assert data == corpus_protobuf(stem)
    assert otlp.count_spans(otlp.parse_request(data, content_type=otlp.PROTOBUF)) > 0


# --- Decompression ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["", "identity", " Identity "])
def test_it_passes_identity_bodies_through(encoding: str) -> None:
    assert otlp.decompress(b"\x0a\x00raw", encoding=encoding, limit=1024) == b"\x0a\x00raw"


def test_it_decompresses_gzip_whatever_the_header_case() -> None:
    assert otlp.decompress(gzip.compress(b"hello otlp"), encoding=" GZip ", limit=1024) == b"hello otlp"


def test_it_accepts_a_gzip_body_that_inflates_to_exactly_the_limit() -> None:
    assert otlp.decompress(gzip.compress(b"x" * 1024), encoding="gzip", limit=1024) == b"x" * 1024


def test_it_rejects_gzip_bodies_that_inflate_past_the_limit() -> None:
    with pytest.raises(otlp.BodyTooLarge, match="1024 bytes"):
        otlp.decompress(gzip.compress(b"x" * 1025), encoding="gzip", limit=1024)


def test_it_rejects_gzip_bombs_without_inflating_them() -> None:
    bomb = gzip_bomb(100 * 1024 * 1024)
    assert len(bomb) < 200 * 1024  # ~100 KB on the wire, 100 MB once inflated
    limit = 1024 * 1024

    tracemalloc.start()
    try:
        with pytest.raises(otlp.BodyTooLarge, match="exceeds the limit"):
            otlp.decompress(bomb, encoding="gzip", limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Inflating everything would allocate 100 MB; stopping at the limit allocates about 1 MB.
    assert peak < 4 * limit


def test_it_rejects_truncated_gzip_as_a_bad_body() -> None:
    whole = gzip.compress(b"some protobuf bytes " * 100)

    with pytest.raises(otlp.BadBody, match="truncated"):
        otlp.decompress(whole[: len(whole) // 2], encoding="gzip", limit=1024 * 1024)


def test_it_rejects_bodies_that_are_not_gzip_as_a_bad_body() -> None:
    with pytest.raises(otlp.BadBody, match="not valid gzip"):
        otlp.decompress(b"this was never gzipped", encoding="gzip", limit=1024 * 1024)


def test_it_rejects_unsupported_content_encodings() -> None:
    with pytest.raises(otlp.BadBody, match="'br'"):
        otlp.decompress(b"anything", encoding="br", limit=1024)


def test_it_decodes_every_member_of_a_multi_member_gzip_body() -> None:
    # RFC 1952 allows a gzip body to be several members back to back (gzip.decompress, Go's
    # gzip.Reader and so the OpenTelemetry Collector read them all). Keeping the first member
    # only would acknowledge spans that are then silently dropped.
    body = gzip.compress(b"first member, ") + gzip.compress(b"second member")

    assert otlp.decompress(body, encoding="gzip", limit=1024) == b"first member, second member"


def test_it_rejects_trailing_garbage_after_the_gzip_stream() -> None:
    with pytest.raises(otlp.BadBody):
        otlp.decompress(gzip.compress(b"payload") + b"not gzip at all", encoding="gzip", limit=1024)


# --- Parsing: protobuf ------------------------------------------------------------------------


def test_it_rejects_undecodable_protobuf_with_the_reason() -> None:
    # Field 1 (resource_spans), length-delimited, announcing far more bytes than follow.
    with pytest.raises(otlp.BadBody, match="not a valid ExportTraceServiceRequest protobuf"):
        otlp.parse_request(b"\x0a\xff\xff\xff\xff\x0f", content_type=otlp.PROTOBUF)


def test_it_decodes_an_empty_protobuf_body_as_a_request_without_spans() -> None:
    request = otlp.parse_request(b"", content_type="Application/X-Protobuf")

    assert request == ExportTraceServiceRequest()
    assert otlp.count_spans(request) == 0


# --- Parsing: OTLP/JSON -----------------------------------------------------------------------


def test_it_rewrites_hex_ids_of_json_bodies_into_bytes() -> None:
    link = {"traceId": "11" * 16, "spanId": "22" * 8}
    request = parse_json(json_request(links=[link]))

    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.links[0].trace_id == b"\x11" * 16
    assert span.links[0].span_id == b"\x22" * 8


def test_it_accepts_uppercase_hex_ids_in_json() -> None:
    request = parse_json(json_request(traceId=TRACE_ID.upper()))

    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id == bytes.fromhex(TRACE_ID)


def test_it_rejects_invalid_json_with_the_reason() -> None:
    with pytest.raises(otlp.BadBody, match="body is not valid JSON"):
        otlp.parse_request(b'{"resourceSpans": [', content_type=otlp.JSON)


def test_it_rejects_json_that_is_not_utf8() -> None:
    with pytest.raises(otlp.BadBody, match="body is not valid JSON"):
        otlp.parse_request(b'{"resourceSpans": "\xff\xfe"}', content_type=otlp.JSON)


def test_it_rejects_json_that_is_not_an_object() -> None:
    with pytest.raises(otlp.BadBody, match="not a JSON object"):
        otlp.parse_request(b"[1, 2, 3]", content_type=otlp.JSON)


def test_it_rejects_deeply_nested_json_as_a_bad_body() -> None:
    # json.loads raises RecursionError (not a ValueError) past ~1000 levels; a hostile client
    # must get a 400, not a 500 from an uncaught exception.
    with pytest.raises(otlp.BadBody):
        otlp.parse_request(b"[" * 100_000, content_type=otlp.JSON)


def test_it_rejects_a_json_id_that_is_not_hex_and_says_where() -> None:
    with pytest.raises(otlp.BadBody) as excinfo:
        parse_json(json_request(traceId="zz" * 16))

    message = str(excinfo.value)
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in message
    assert "is not hex" in message
    assert "zz" * 16 in message


def test_it_rejects_a_json_span_id_of_the_wrong_length_and_says_the_expected_length() -> None:
    with pytest.raises(otlp.BadBody) as excinfo:
        parse_json(json_request(spanId="abcd"))

    message = str(excinfo.value)
    assert "resourceSpans[0].scopeSpans[0].spans[0].spanId" in message
    assert "is not 16 hex digits" in message


def test_it_rejects_a_json_trace_id_of_the_wrong_length() -> None:
    with pytest.raises(otlp.BadBody, match=r"traceId .* is not 32 hex digits"):
        parse_json(json_request(traceId=SPAN_ID))


def test_it_rejects_a_bad_link_id_and_says_which_link() -> None:
    with pytest.raises(otlp.BadBody, match=r"spans\[0\]\.links\[1\]\.spanId"):
        parse_json(json_request(links=[{"traceId": TRACE_ID, "spanId": SPAN_ID}, {"spanId": "not-hex"}]))


def test_it_rejects_a_json_id_that_is_not_a_string() -> None:
    with pytest.raises(otlp.BadBody, match="traceId is not a hex string"):
        parse_json(json_request(traceId=12345))


def test_it_rejects_json_whose_spans_are_not_a_list() -> None:
    document = json_request()
    document["resourceSpans"][0]["scopeSpans"] = {"spans": []}

    with pytest.raises(otlp.BadBody, match=r"resourceSpans\[0\]\.scopeSpans is not a list"):
        parse_json(document)


def test_it_rejects_json_with_fields_of_the_wrong_type() -> None:
    with pytest.raises(otlp.BadBody, match="not a valid OTLP/JSON ExportTraceServiceRequest"):
        parse_json(json_request(startTimeUnixNano="yesterday"))


def test_it_ignores_unknown_json_fields() -> None:
    document = json_request(futureSpanField={"nested": True})
    document["futureTopLevelField"] = [1, 2]
    document["resourceSpans"][0]["scopeSpans"][0]["scope"]["futureScopeField"] = "x"

    request = parse_json(document)

    assert request == parse_json(json_request())
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "op"


# --- Span extraction --------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_it_yields_corpus_spans_with_hex_ids_as_the_reference_decoder_does(stem: str) -> None:
    expected = json.loads(corpus_bytes(f"{stem}.expected.json"))["spans"]
    request = otlp.parse_request(corpus_protobuf(stem), content_type=otlp.PROTOBUF)

    records = list(otlp.iter_spans(request))

    assert all(isinstance(r, otlp.SpanRecord) for r in records)
    assert len(records) == len(expected)
    for record, want in zip(records, expected, strict=True):
        assert (record.trace_id, record.span_id, record.parent_span_id) == (
            want["trace_id"],
            want["span_id"],
            want["parent_span_id"],
        )
        assert record.name == want["name"]
        assert record.span_kind == want["kind"]
        assert record.scope_name == want["scope"]
        assert record.scope_version == want["scope_version"]
        assert record.service_name == want["service_name"]
        assert record.start_time_unix_nano == int(want["start_time_unix_nano"])
        assert record.end_time_unix_nano == int(want["end_time_unix_nano"])
        assert record.status_code == want["status_code"]
        for key, value in want["token_attributes"].items():
            assert record.attributes[key] == value, key
        assert [e["name"] for e in record.events] == want["event_names"]


def test_it_yields_lowercase_hex_ids() -> None:
    span = Span(
        trace_id=bytes.fromhex(TRACE_ID),
        span_id=bytes.fromhex(SPAN_ID),
        parent_span_id=bytes.fromhex(PARENT_ID),
        name="op",
        links=[Span.Link(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8)],
    )

    (record,) = otlp.iter_spans(one_span_request(span))

    assert isinstance(record, otlp.SpanRecord)
    assert record.trace_id == TRACE_ID
    assert record.span_id == SPAN_ID
    assert record.parent_span_id == PARENT_ID
    assert record.links == [{"trace_id": "ab" * 16, "span_id": "cd" * 8, "attributes": {}}]


@pytest.mark.parametrize("parent", [b"", b"\x00" * 8, b"\x01\x02"], ids=["empty", "all-zero", "malformed"])
def test_it_gives_a_root_span_an_empty_parent_id(parent: bytes) -> None:
    span = Span(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID), parent_span_id=parent, name="r")

    (record,) = otlp.iter_spans(one_span_request(span))

    assert isinstance(record, otlp.SpanRecord)
    assert record.parent_span_id == ""


def test_it_yields_a_reason_for_a_span_with_an_8_byte_trace_id() -> None:
    short = Span(trace_id=b"\x01" * 8, span_id=bytes.fromhex(SPAN_ID), name="half-a-trace-id")
    good = Span(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID), name="fine")
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[short, good])])])

    reason, record = otlp.iter_spans(request)

    assert isinstance(reason, str)
    assert "half-a-trace-id" in reason
    assert "wrong size" in reason
    assert isinstance(record, otlp.SpanRecord)
    assert record.name == "fine"


def test_it_yields_a_reason_for_a_span_without_a_span_id() -> None:
    span = Span(trace_id=bytes.fromhex(TRACE_ID), name="anonymous")

    (reason,) = otlp.iter_spans(one_span_request(span))

    assert isinstance(reason, str)
    assert "anonymous" in reason


def test_it_converts_every_attribute_value_type() -> None:
    kv = KeyValue
    values = [
        kv(key="str", value=AnyValue(string_value="hello")),
        kv(key="int", value=AnyValue(int_value=-9_007_199_254_740_993)),
        kv(key="double", value=AnyValue(double_value=0.25)),
        kv(key="bool", value=AnyValue(bool_value=True)),
        kv(key="false", value=AnyValue(bool_value=False)),
        kv(
            key="array",
            value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="two")])),
        ),
        kv(
            key="kvlist",
            value=AnyValue(
                kvlist_value=KeyValueList(
                    values=[
                        kv(key="inner", value=AnyValue(double_value=1.5)),
                        kv(key="deeper", value=AnyValue(array_value=ArrayValue(values=[AnyValue(bool_value=False)]))),
                    ]
                )
            ),
        ),
        kv(key="bytes", value=AnyValue(bytes_value=b"\x00\xffraw")),
        kv(key="empty", value=AnyValue()),
    ]

    converted = otlp.attributes(values)

    assert converted == {
        "str": "hello",
        "int": -9_007_199_254_740_993,
        "double": 0.25,
        "bool": True,
        "false": False,
        "array": [1, "two"],
        "kvlist": {"inner": 1.5, "deeper": [False]},
        "bytes": base64.b64encode(b"\x00\xffraw").decode(),
        "empty": None,
    }
    assert type(converted["int"]) is int
    assert type(converted["double"]) is float
    assert type(converted["bool"]) is bool
    json.dumps(converted)  # what the worker stores must be JSON-serializable


def test_it_converts_json_attribute_values_like_protobuf_ones() -> None:
    attributes = [
        {"key": "int", "value": {"intValue": "42"}},
        {"key": "double", "value": {"doubleValue": 2.5}},
        {"key": "bool", "value": {"boolValue": True}},
        {"key": "bytes", "value": {"bytesValue": base64.b64encode(b"\x01\x02").decode()}},
        {"key": "array", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
        {"key": "kvlist", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": 7}}]}}},
    ]

    (record,) = otlp.iter_spans(parse_json(json_request(attributes=attributes)))

    assert isinstance(record, otlp.SpanRecord)
    assert record.attributes == {
        "int": 42,
        "double": 2.5,
        "bool": True,
        "bytes": base64.b64encode(b"\x01\x02").decode(),
        "array": ["a"],
        "kvlist": {"k": 7},
    }
    assert record.service_name == "svc"
    assert (record.scope_name, record.scope_version) == ("scope", "1.0")


# --- Responses --------------------------------------------------------------------------------


def test_it_answers_success_with_an_empty_export_response_in_the_request_encoding() -> None:
    body, media = otlp.response_body(content_type="application/x-protobuf")
    assert media == otlp.PROTOBUF
    assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
    assert body == b""

    assert otlp.response_body(content_type="application/json; charset=utf-8") == (b"{}", otlp.JSON)


@pytest.mark.parametrize("message", ["bad", "x" * 300, "non-ascii: ünïcödé ✓"])
def test_it_encodes_protobuf_errors_as_a_google_rpc_status(message: str) -> None:
    body, media = otlp.error_body(message, code=3, content_type=otlp.PROTOBUF)

    assert media == otlp.PROTOBUF
    assert decode_status(body) == (3, message)


def test_it_encodes_multi_byte_status_codes_as_varints() -> None:
    body, _ = otlp.error_body("m", code=300, content_type=otlp.PROTOBUF)

    assert body.startswith(b"\x08\xac\x02")
    assert decode_status(body) == (300, "m")


def test_it_encodes_json_errors_as_a_status_object() -> None:
    body, media = otlp.error_body("body is not valid JSON", code=3, content_type="application/json")

    assert media == otlp.JSON
    assert json.loads(body) == {"code": 3, "message": "body is not valid JSON"}


def test_media_type_drops_parameters_and_case() -> None:
    assert otlp.media_type("Application/JSON; charset=utf-8") == "application/json"
    assert otlp.media_type("") == ""
