"""Builders for tests: OTLP spans and bodies, ingest through the real service, prices, users,
projects, a multi-agent crew trace and a sampled GPU. Test modules import this module, never each
other; fixtures stay in conftest.py files."""

from __future__ import annotations

import gzip
import json
import runpy
import time
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from tracer import ingest, otlp
from tracer.celery import Queues, app
from tracer.gpu.attribution import gpu_attribute
from tracer.gpu.prices import endpoint_upsert
from tracer.models import ApiKey, GpuDevice, GpuSample, IngestBatch, Membership, ModelPrice, Project, Span, Trace
from tracer.projects import project_create

MODEL = "acme-test-model"
# Matches no pattern of the shipped catalog.
UNPRICED_MODEL = "mystery-model-9000"


def ns(value: str) -> int:
    """An ISO datetime (UTC) as Unix nanoseconds, computed in integers."""
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    seconds = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + moment.microsecond * 1000


T0 = ns("2026-03-01T12:00:00")
TRACE = "0af7651916cd43dd8448eb211c80319c"


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


# --- Building and ingesting OTLP ---------------------------------------------------------------


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def otlp_span(
    span_id: str,
    parent: str = "",
    *,
    trace: str = TRACE,
    name: str = "chat",
    start: int = T0,
    duration: int = 1_000_000,
    error: bool = False,
    attrs: dict[str, Any] | None = None,
) -> trace_pb2.Span:
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(trace),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
    )
    if error:
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    for key, value in (attrs or {}).items():
        span.attributes.append(KeyValue(key=key, value=_any(value)))
    return span


def otlp_body(*spans: trace_pb2.Span, service: str = "agent-service", scope: str = "tests") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=_any(service)))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return request.SerializeToString()


def ingest_spans(project: Project, *spans: trace_pb2.Span, scope: str = "tests") -> None:
    """One batch holding these spans (of one instrumentation scope), accepted and processed like
    the worker does."""
    batch = ingest.batch_accept(project=project, body=otlp_body(*spans, scope=scope), content_type=otlp.PROTOBUF)
    assert batch is not None
    result = ingest.batch_process(batch_id=batch.pk)
    assert result is not None and result.spans == len(spans)


def chat(
    *,
    model: str = MODEL,
    input: int | None = None,
    output: int | None = None,
    cached: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The attributes of an OTel GenAI `chat` client span."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    for key, value in (
        ("gen_ai.usage.input_tokens", input),
        ("gen_ai.usage.output_tokens", output),
        ("gen_ai.usage.cache_read.input_tokens", cached),
        ("gen_ai.usage.cache_creation.input_tokens", cache_write),
        ("gen_ai.usage.reasoning.output_tokens", reasoning),
    ):
        if value is not None:
            attrs[key] = value
    attrs.update(extra)
    return attrs


def price(
    *,
    pattern: str = MODEL,
    input: str = "2",
    output: str = "10",
    cached_input: str | None = None,
    cache_write: str | None = None,
    reasoning: str | None = None,
    provider: str = "",
    project: Project | None = None,
    valid_from: date = date(2025, 1, 1),
) -> ModelPrice:
    return ModelPrice.objects.create(
        project=project,
        provider=provider,
        model_pattern=pattern,
        input=Decimal(input),
        output=Decimal(output),
        cached_input=None if cached_input is None else Decimal(cached_input),
        cache_write=None if cache_write is None else Decimal(cache_write),
        reasoning=None if reasoning is None else Decimal(reasoning),
        valid_from=valid_from,
    )


# --- Users and projects ------------------------------------------------------------------------


def user_create(name: str) -> User:
    return User.objects.create_user(name, password=f"{name}-password")


# A key that may send and read, like one made before scopes existed ("legacy: ingest + read").
BOTH_SCOPES = (ApiKey.Scope.INGEST, ApiKey.Scope.READ)


def settings_from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """config/settings.py evaluated afresh with these environment variables on top of the test
    run's: what a server started with them would have. Apply what a test needs with
    override_settings; a bad value raises ImproperlyConfigured as at startup."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings.py"))


def project_with_members(name: str, *, owner: User | None = None, members: tuple[User, ...] = ()) -> Project:
    project = project_create(name=name, owner=owner)
    for member in members:
        Membership.objects.create(project=project, user=member, role=Membership.Role.MEMBER)
    return project


# --- A multi-agent crew trace (dashboard pages) ------------------------------------------------

# An hour ago: inside every default time range.
NOW = time.time_ns() - 3600 * 10**9


def agent(name: str) -> dict:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}


def crew_trace(project: Project, n: int, *, start: int = NOW, cost_model: str = MODEL, error: bool = False) -> str:
    """A workflow with a planner agent delegating to a coder agent, each making one call."""
    trace = tid(n)
    ingest_spans(
        project,
        otlp_span(
            sid(1),
            trace=trace,
            name=f"invoke_workflow flow{n % 2}",
            start=start,
            duration=10**9,
            attrs={"gen_ai.operation.name": "invoke_workflow"},
        ),
        otlp_span(sid(2), sid(1), trace=trace, name="invoke_agent planner", start=start + 1, attrs=agent("planner")),
        otlp_span(
            sid(3),
            sid(2),
            trace=trace,
            name=f"chat {cost_model}",
            start=start + 2,
            attrs=chat(model=cost_model, input=1000, cached=200, output=300, reasoning=100),
        ),
        otlp_span(
            sid(4), sid(2), trace=trace, name="invoke_agent coder", start=start + 3, attrs=agent("coder"), error=error
        ),
        otlp_span(
            sid(5),
            sid(4),
            trace=trace,
            name=f"chat {cost_model}",
            start=start + 4,
            attrs=chat(model=cost_model, input=2000, output=500),
        ),
    )
    return trace


# --- A sampled GPU with one LLM call on it -----------------------------------------------------

S = 10**9


def gpu_data_create(project_a: Project, project_b: Project, *, t0: int) -> str:
    """Project A: an H100 sampled for 10 s at 400 W with a 4 s LLM call on it; project B: its own
    GPU. Returns the call's trace id."""
    device = GpuDevice.objects.create(project=project_a, host="nim-1", uuid="GPU-dash", name="NVIDIA H100 80GB HBM3")
    GpuSample.objects.bulk_create(
        GpuSample(
            device=device,
            time_unix_nano=t0 + t * S,
            utilization_gpu=90 if 2 <= t <= 6 else 5,
            power_mw=400_000,
            energy_mj=t * 400_000,
            memory_used_bytes=60 * 2**30,
        )
        for t in range(11)
    )
    GpuDevice.objects.create(project=project_b, host="other-host", uuid="GPU-secret", name="NVIDIA H200")
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-dash"])
    trace_id = "ab" * 16
    Trace.objects.create(
        project=project_a,
        trace_id=trace_id,
        root_span_name="research crew",
        start_time_unix_nano=t0 + 2 * S,
        end_time_unix_nano=t0 + 6 * S,
        cost=Decimal("0.0100"),
        span_count=1,
    )
    Span.objects.create(
        project=project_a,
        trace_id=trace_id,
        span_id="1" * 16,
        name="chat nemotron-super",
        kind="llm",
        billed=True,
        agent_name="planner",
        cost=Decimal("0.0100"),
        start_time_unix_nano=t0 + 2 * S,
        end_time_unix_nano=t0 + 6 * S,
        attributes={"server.address": "nim.internal", "server.port": 8000},
    )
    gpu_attribute(project_id=project_a.pk, start_ns=t0, end_ns=t0 + 10 * S)
    return trace_id


# --- The OTLP fixtures (tests/fixtures/otlp/) and wire helpers ---------------------------------

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "otlp"
# Trace captures: (stem, body file, Content-Encoding).
CORPUS_CAPTURES = [
    ("otel-openai-v2-multiagent-content", "otel-openai-v2-multiagent-content.pb", ""),
    ("otel-openai-v2-multiagent-nocontent", "otel-openai-v2-multiagent-nocontent.pb", ""),
    ("otel-openai-v2-legacy-multiagent-content", "otel-openai-v2-legacy-multiagent-content.pb", ""),
    ("openinference-openai-multiagent", "openinference-openai-multiagent.pb", ""),
    ("openinference-openai-multiagent-genai-semconv", "openinference-openai-multiagent-genai-semconv.pb.gz", "gzip"),
    ("traceloop-openai-multiagent-content", "traceloop-openai-multiagent-content.pb", ""),
    ("traceloop-openai-multiagent-nocontent", "traceloop-openai-multiagent-nocontent.pb", ""),
]


def corpus_bytes(name: str) -> bytes:
    path = CORPUS / name
    if not path.exists():
        pytest.fail(f"OTLP corpus file missing: {path} (the fixtures live in tests/fixtures/otlp/)")
    return path.read_bytes()


def corpus_protobuf(stem: str) -> bytes:
    """The capture's uncompressed protobuf body."""
    for capture, body, encoding in CORPUS_CAPTURES:
        if capture == stem:
            data = corpus_bytes(body)
            return gzip.decompress(data) if encoding == "gzip" else data
    raise KeyError(stem)


def gzip_bomb(size: int, *, chunk: int = 1024 * 1024) -> bytes:
    """`size` zero bytes, gzipped chunk by chunk so the test never holds the inflated body."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(chunk)
    parts = [deflater.compress(zeros) for _ in range(size // chunk)]
    parts.append(deflater.flush())
    return b"".join(parts)


def decode_status(body: bytes) -> tuple[int, str]:
    """Decode a google.rpc.Status by hand: field 1 varint `code`, field 2 string `message`."""

    def varint(pos: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos

    code, message, pos = 0, "", 0
    while pos < len(body):
        tag, pos = varint(pos)
        field, wire_type = tag >> 3, tag & 7
        if (field, wire_type) == (1, 0):
            code, pos = varint(pos)
        elif (field, wire_type) == (2, 2):
            length, pos = varint(pos)
            message = body[pos : pos + length].decode()
            pos += length
        else:
            raise AssertionError(f"unexpected field {field} wire type {wire_type} in a google.rpc.Status")
    return code, message


# --- Rate limits ------------------------------------------------------------------------------


class FakeClock:
    """A clock for the rate limiters that moves only when told (no sleeps, no wall clock)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def spans_body(count: int, *, first: int = 1, trace: str = TRACE) -> bytes:
    """A protobuf traces body of `count` root spans sid(first)... of one trace."""
    return otlp_body(*(otlp_span(sid(first + n), trace=trace, name=f"step {n}") for n in range(count)))


# --- The broker and the real worker (integration tests) ---------------------------------------


def broker_queue_size(queue: Queues) -> int:
    """Messages waiting in a queue of the configured broker (not yet delivered to any worker)."""
    with app.connection_for_write() as conn:
        # Not passive: on a new Redis database the queue does not exist until something declares it.
        return conn.default_channel.queue_declare(queue.value).message_count


def broker_queues_purge() -> None:
    """Drop the messages left in the broker's queues, e.g. by an earlier test run: they name batch
    ids that the rows of this run may have again."""
    with app.connection_for_write() as conn:
        for queue in Queues:
            conn.default_channel.queue_purge(queue.value)


def wait_until_processed(project: Project, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unfinished = IngestBatch.objects.filter(project=project).exclude(status=IngestBatch.Status.DONE)
        if IngestBatch.objects.filter(project=project).exists() and not unfinished.exists():
            return
        time.sleep(0.25)
    states = list(IngestBatch.objects.filter(project=project).values_list("pk", "status", "error"))
    pytest.fail(f"batches not processed within {timeout}s: {states}")


def session_spans(turns: int, *, trace: str = TRACE, system: str = "You are a careful agent. " * 40) -> list:
    """A long agent session with content capture on: call n re-sends the system prompt and every
    earlier message, in the OTel GenAI attributes, OpenInference's flattened keys and older GenAI
    content events (each convention once, so every splitter is exercised)."""
    history: list[dict[str, Any]] = []
    spans = []
    for turn in range(turns):
        history.append({"role": "user", "parts": [{"type": "text", "content": f"question {turn}: " + "why? " * 50}]})
        answer = {"role": "assistant", "parts": [{"type": "text", "content": f"answer {turn} é: " + "because " * 60}]}
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 100 * (turn + 1),
            "gen_ai.usage.output_tokens": 60,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": system}]),
            "gen_ai.input.messages": json.dumps(history),
            "gen_ai.output.messages": json.dumps([answer], ensure_ascii=False, separators=(",", ":")),
        }
        for i, message in enumerate(history):
            attrs[f"llm.input_messages.{i}.message.role"] = message["role"]
            attrs[f"llm.input_messages.{i}.message.content"] = message["parts"][0]["content"]
        span = otlp_span(sid(turn + 1), trace=trace, start=T0 + turn * 1_000_000_000, attrs=attrs)
        for message in history[-2:]:
            event = span.events.add(name=f"gen_ai.{message['role']}.message", time_unix_nano=span.start_time_unix_nano)
            event.attributes.append(KeyValue(key="content", value=_any(message["parts"][0]["content"])))
            event.attributes.append(KeyValue(key="gen_ai.system", value=_any("openai")))
        spans.append(span)
        history.append(answer)
    return spans
