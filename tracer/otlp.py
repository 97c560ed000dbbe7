"""OTLP/HTTP wire formats: body decompression, protobuf and JSON decoding, span extraction.

Pure functions, no database: the receiver uses them to validate a body, the ingest worker to turn
an accepted body into span records.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)
ENCODINGS = ("", "identity", "gzip")
_Request = TypeVar("_Request", ExportTraceServiceRequest, ExportMetricsServiceRequest)


class BadBody(ValueError):
    """The body cannot be decoded; the message says why (sent back with a 400)."""


class BodyTooLarge(ValueError):
    """The body, or what it decompresses to, is over the limit (a 413)."""


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def decompress(body: bytes, *, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding, never producing more than `limit` bytes (gzip bombs stop here)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BadBody(f"unsupported Content-Encoding {encoding!r}")
    # A gzip body may be several members back to back (RFC 1952): inflate them all, and
    # refuse anything after the last one that is not another member.
    out = bytearray()
    pending = body
    try:
        while True:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise BodyTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
            if not inflater.eof:
                raise BadBody("body is not valid gzip: the stream is truncated")
            pending = inflater.unused_data
            if not pending:
                return bytes(out)
    except zlib.error as exc:
        raise BadBody(f"body is not valid gzip: {exc}") from None


def parse_request(data: bytes, *, content_type: str) -> ExportTraceServiceRequest:
    """Decode an ExportTraceServiceRequest from a protobuf or OTLP/JSON body."""
    return _parse(data, content_type=content_type, request=ExportTraceServiceRequest(), fix=_hex_ids_to_base64)


def parse_metrics_request(data: bytes, *, content_type: str) -> ExportMetricsServiceRequest:
    """Decode an ExportMetricsServiceRequest from a protobuf or OTLP/JSON body."""
    return _parse(data, content_type=content_type, request=ExportMetricsServiceRequest(), fix=_drop_exemplars)


def _parse(data: bytes, *, content_type: str, request: _Request, fix: Callable[[dict[str, Any]], None]) -> _Request:
    name = type(request).__name__
    if media_type(content_type) == PROTOBUF:
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise BadBody(f"body is not a valid {name} protobuf: {exc}") from None
        return request
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadBody(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadBody("body is not valid JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise BadBody("body is not a JSON object")
    fix(document)
    try:
        # Receivers must ignore unknown fields (OTLP spec, JSON encoding).
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise BadBody(f"body is not a valid OTLP/JSON {name}: {exc}") from None
    return request


_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex, protobuf's JSON mapping expects base64: rewrite in place."""

    def fix(obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise BadBody(f"{where} is not a JSON object")
        for field, size in _ID_FIELDS.items():
            value = obj.get(field)
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                raise BadBody(f"{where}.{field} is not a hex string")
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise BadBody(f"{where}.{field} {value!r} is not hex") from None
            if len(raw) != size:
                raise BadBody(f"{where}.{field} {value!r} is not {size * 2} hex digits")
            obj[field] = base64.b64encode(raw).decode()

    for r, resource_spans in enumerate(_list(document, "resourceSpans", "body")):
        where_r = f"resourceSpans[{r}]"
        for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", where_r)):
            where_s = f"{where_r}.scopeSpans[{s}]"
            for i, span in enumerate(_list(scope_spans, "spans", where_s)):
                where = f"{where_s}.spans[{i}]"
                fix(span, where)
                for j, link in enumerate(_list(span, "links", where)):
                    fix(link, f"{where}.links[{j}]")


def _list(obj: Any, key: str, where: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise BadBody(f"{where} is not a JSON object")
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise BadBody(f"{where}.{key} is not a list")
    return value


def _drop_exemplars(document: dict[str, Any]) -> None:
    """Exemplars carry hex trace ids in OTLP/JSON that protobuf's JSON mapping would read as base64;
    we store no exemplars, so they are dropped before parsing (in place)."""
    for r, resource_metrics in enumerate(_list(document, "resourceMetrics", "body")):
        where_r = f"resourceMetrics[{r}]"
        for s, scope_metrics in enumerate(_list(resource_metrics, "scopeMetrics", where_r)):
            for m, metric in enumerate(_list(scope_metrics, "metrics", f"{where_r}.scopeMetrics[{s}]")):
                if not isinstance(metric, dict):
                    raise BadBody(f"{where_r}.scopeMetrics[{s}].metrics[{m}] is not a JSON object")
                for data in metric.values():
                    if isinstance(data, dict) and isinstance(data.get("dataPoints"), list):
                        for point in data["dataPoints"]:
                            if isinstance(point, dict):
                                point.pop("exemplars", None)


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def response_body(*, content_type: str) -> tuple[bytes, str]:
    """An empty ExportTraceServiceResponse (full success) in the request's encoding."""
    if media_type(content_type) == JSON:
        return b"{}", JSON
    return ExportTraceServiceResponse().SerializeToString(), PROTOBUF


def error_body(message: str, *, code: int, content_type: str) -> tuple[bytes, str]:
    """A google.rpc.Status, as the OTLP spec asks of error responses, in the request's encoding.

    Encoded by hand (two fields) rather than pulling in googleapis-common-protos for it.
    """
    if media_type(content_type) == PROTOBUF:
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text, PROTOBUF
    return json.dumps({"code": code, "message": message}).encode(), JSON


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


# --- Span extraction (worker side) --------------------------------------------------------


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass(slots=True)
class SpanRecord:
    """One span, decoded and flattened for storage."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    span_kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str
    service_name: str
    scope_name: str
    scope_version: str
    resource_attributes: dict[str, Any]
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]


def iter_spans(request: ExportTraceServiceRequest) -> Iterator[SpanRecord | str]:
    """Yield a SpanRecord per span, or a reason string for a span that cannot be stored.

    A span is rejected only when its identity is unusable (trace or span id of the wrong size):
    every attribute is kept as sent, whatever its shape.
    """
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = _text(str(resource.get("service.name", "") or ""))
        for scope_spans in resource_spans.scope_spans:
            scope_name = _text(scope_spans.scope.name)
            scope_version = _text(scope_spans.scope.version)
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    yield f"span {span.name!r}: trace id or span id is missing or of the wrong size"
                    continue
                parent = span.parent_span_id
                yield SpanRecord(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    # An all-zero or malformed parent id means "no parent" in practice.
                    parent_span_id=parent.hex() if len(parent) == 8 and any(parent) else "",
                    name=_text(span.name),
                    span_kind=span.kind,
                    start_time_unix_nano=span.start_time_unix_nano,
                    end_time_unix_nano=span.end_time_unix_nano,
                    status_code=span.status.code,
                    status_message=_text(span.status.message),
                    service_name=service,
                    scope_name=scope_name,
                    scope_version=scope_version,
                    resource_attributes=resource,
                    attributes=attributes(span.attributes),
                    events=[
                        {
                            "name": event.name,
                            "time_unix_nano": event.time_unix_nano,
                            "attributes": attributes(event.attributes),
                        }
                        for event in span.events
                    ],
                    links=[
                        {
                            "trace_id": link.trace_id.hex(),
                            "span_id": link.span_id.hex(),
                            "attributes": attributes(link.attributes),
                        }
                        for link in span.links
                    ],
                )


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; keep the rest of the string rather than fail the span.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


# --- Metric points (GPU telemetry) ----------------------------------------------------------


@dataclass(slots=True)
class MetricPoint:
    """One number of a gauge or sum, with everything needed to tell which device it describes."""

    name: str
    unit: str
    time_unix_nano: int
    value: float | int
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any]


def iter_metric_points(request: ExportMetricsServiceRequest, *, names: frozenset[str]) -> Iterator[MetricPoint]:
    """The number points of the named gauges and sums (histograms and summaries are skipped)."""
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name not in names:
                    continue
                which = metric.WhichOneof("data")
                if which not in ("gauge", "sum"):
                    continue
                for point in getattr(metric, which).data_points:
                    kind = point.WhichOneof("value")
                    if kind is None:
                        continue
                    yield MetricPoint(
                        name=metric.name,
                        unit=metric.unit,
                        time_unix_nano=point.time_unix_nano,
                        value=getattr(point, kind),
                        attributes=attributes(point.attributes),
                        resource_attributes=resource,
                    )
