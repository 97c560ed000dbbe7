"""The openai instrumentation against canned OpenAI-shaped HTTP replies (httpx2.MockTransport).

The replies follow the mock NIM's rules (see tests/fixtures/otlp/README.md): with
stream_options.include_usage the server sends `"usage": null` on every chunk and one last
usage-only chunk with `choices: []`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import math
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import octotrace
from octotrace import _budget
from octotrace._budget import BudgetExceeded
from octotrace.instrumentation import openai as oi

BASE_URL = "https://integrate.api.nvidia.com/v1"
MODEL = "nvidia/llama-3.3-nemotron-super-49b-v1.5"
PRICED_MODEL = "nvidia/nemotron-3-nano-30b-a3b"
EMBED_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"
MESSAGES = [
    {"role": "system", "content": "You are a careful analyst. /think"},
    {"role": "user", "content": "What does 1.2M tokens a day cost? secret-marker-42"},
]
SEARCH_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search_docs", "arguments": '{"query": "nemotron pricing"}'},
}


def tok(text: str) -> int:
    return math.ceil(len(text) / 4)


# --- a canned OpenAI-compatible server -------------------------------------------------------


class FakeServer:
    """Answers chat and embeddings requests with what `reply` says, and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.reply: dict[str, Any] = {"content": "It costs about $0.30 a day."}
        self.usage: dict[str, Any] | None = {
            "prompt_tokens": 52,
            "completion_tokens": 118,
            "total_tokens": 170,
            "prompt_tokens_details": {"cached_tokens": 16},
            "completion_tokens_details": {"reasoning_tokens": 82},
        }

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.status != 200:
            return httpx2.Response(self.status, json={"error": {"message": "upstream exploded", "type": "server"}})
        if request.url.path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            tokens = sum(tok(text) for text in inputs)
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "model": body["model"],
                    "data": [{"object": "embedding", "index": i, "embedding": [0.1] * 4} for i in range(len(inputs))],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        if body.get("stream"):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=self._sse(body))
        return httpx2.Response(200, json=self._completion(body))

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.get("content")}
        if "reasoning_content" in self.reply:
            message["reasoning_content"] = self.reply["reasoning_content"]
        if "tool_calls" in self.reply:
            message["tool_calls"] = self.reply["tool_calls"]
        return {
            "id": "chatcmpl-0123456789abcdef",
            "object": "chat.completion",
            "created": 1750000000,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": self.reply.get("finish", "stop")}],
            "usage": self.usage,
        }

    def _sse(self, body: dict[str, Any]) -> bytes:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        reasoning = self.reply.get("reasoning_content") or ""
        deltas += [{"reasoning_content": reasoning[i : i + 8]} for i in range(0, len(reasoning), 8)]
        for index, call in enumerate(self.reply.get("tool_calls") or ()):
            arguments = call["function"]["arguments"]
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + 5]}}]}
                for i in range(0, len(arguments), 5)
            ]
        content = self.reply.get("content") or ""
        deltas += [{"content": content[i : i + 6]} for i in range(0, len(content), 6)]
        chunks = [{"index": 0, "delta": delta, "finish_reason": None} for delta in deltas]
        chunks.append({"index": 0, "delta": {}, "finish_reason": self.reply.get("finish", "stop")})
        events = []
        for choice in chunks:
            chunk: dict[str, Any] = {
                "id": "chatcmpl-stream-0001",
                "object": "chat.completion.chunk",
                "created": 1750000000,
                "model": body["model"],
                "choices": [choice],
            }
            if include_usage:
                chunk["usage"] = None
            events.append(chunk)
        if include_usage:
            events.append(
                {
                    "id": "chatcmpl-stream-0001",
                    "object": "chat.completion.chunk",
                    "created": 1750000000,
                    "model": body["model"],
                    "choices": [],
                    "usage": self.usage,
                }
            )
        lines = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
        return "".join(lines).encode()


# --- fixtures --------------------------------------------------------------------------------

_exporter: InMemorySpanExporter | None = None


@pytest.fixture
def exporter() -> Any:
    # The global provider can be set once per process: reuse one another test set, and add
    # our exporter to it once.
    global _exporter
    if _exporter is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        _exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.fixture
def instrumented(exporter: InMemorySpanExporter) -> Any:
    oi.instrument_openai()
    yield
    oi.uninstrument_openai()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=BASE_URL,
        api_key="x",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(server.handler)),
    )


@pytest.fixture
def async_client(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=BASE_URL,
        api_key="x",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler)),
    )


@pytest.fixture
def content_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oi, "_capture_content", lambda: True)


@pytest.fixture
def content_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oi, "_capture_content", lambda: False)


def only_span(exporter: InMemorySpanExporter, prefix: str = "chat ") -> ReadableSpan:
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk.to_dict() for chunk in stream]


async def acollect(stream: Any) -> list[dict[str, Any]]:
    return [chunk.to_dict() async for chunk in stream]


# --- chat, non-stream ------------------------------------------------------------------------


def test_it_records_a_chat_call(instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0.6, top_p=0.95, max_tokens=512, seed=7, stop=["END"]
    )

    span = only_span(exporter)
    attrs = span.attributes
    assert span.name == f"chat {MODEL}"
    assert span.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "nvidia"
    assert attrs["server.address"] == "integrate.api.nvidia.com"
    assert attrs["server.port"] == 443
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.request.temperature"] == 0.6
    assert attrs["gen_ai.request.top_p"] == 0.95
    assert attrs["gen_ai.request.max_tokens"] == 512
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["octotrace.request.stream"] is False
    assert attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.response.id"] == "chatcmpl-0123456789abcdef"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == 52
    assert attrs["gen_ai.usage.output_tokens"] == 118
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 16
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 82
    assert "octotrace.usage.reasoning_estimated" not in attrs
    assert span.status.status_code == StatusCode.UNSET


def test_it_maps_max_completion_tokens_and_the_provider_of_other_hosts(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer
) -> None:
    local = openai.OpenAI(
        base_url="http://localhost:8001/v1",
        api_key="x",
        http_client=httpx2.Client(transport=httpx2.MockTransport(server.handler)),
    )
    local.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=64)

    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["server.address"] == "localhost"
    assert attrs["server.port"] == 8001


def test_it_records_async_chat_calls(
    instrumented: None, exporter: InMemorySpanExporter, async_client: openai.AsyncOpenAI
) -> None:
    response = asyncio.run(async_client.chat.completions.create(model=MODEL, messages=MESSAGES))

    assert response.choices[0].message.content == "It costs about $0.30 a day."
    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.usage.input_tokens"] == 52
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 82
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)


def test_it_records_tool_calls(
    instrumented: None, content_on: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.reply = {"content": None, "tool_calls": [SEARCH_CALL], "finish": "tool_calls"}

    client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[{"type": "function", "function": {}}])

    attrs = only_span(exporter).attributes
    assert attrs["octotrace.response.tool_calls"] == ("search_docs",)
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "search_docs", "arguments": {"query": "nemotron pricing"}}
            ],
            "finish_reason": "tool_calls",
        }
    ]


def test_it_estimates_reasoning_from_reasoning_content_when_the_server_reports_none(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    reasoning = "The user wants a daily cost; multiply tokens by the price."
    server.reply = {"content": "About $0.30.", "reasoning_content": reasoning}
    server.usage = {"prompt_tokens": 52, "completion_tokens": 40, "total_tokens": 92}

    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == tok(reasoning)
    assert attrs["octotrace.usage.reasoning_estimated"] is True


def test_it_estimates_reasoning_from_think_tags(
    instrumented: None, content_on: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    thought = "Tokens per day times price per token, carefully."
    server.reply = {"content": f"<think>{thought}</think>About $0.30."}
    server.usage = {
        "prompt_tokens": 52,
        "completion_tokens": 40,
        "total_tokens": 92,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }

    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == tok(thought)
    assert attrs["octotrace.usage.reasoning_estimated"] is True
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["parts"] == [
        {"type": "reasoning", "content": thought},
        {"type": "text", "content": "About $0.30."},
    ]


def test_it_does_not_estimate_reasoning_the_server_counted(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.reply = {"content": "About $0.30.", "reasoning_content": "Some thinking."}

    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 82
    assert "octotrace.usage.reasoning_estimated" not in attrs


def test_it_records_errors_and_reraises(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.status = 500

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)

    span = only_span(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "InternalServerError"
    assert [event.name for event in span.events] == ["exception"]


# --- streams ---------------------------------------------------------------------------------


def test_it_adds_include_usage_to_streams_and_hides_the_usage_chunk(
    exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.reply = {"content": "About $0.30 a day, all told.", "reasoning_content": "Multiply."}
    plain = collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "stream_options" not in server.requests[-1]

    oi.instrument_openai()
    try:
        traced = collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    finally:
        oi.uninstrument_openai()

    assert server.requests[-1]["stream_options"] == {"include_usage": True}
    assert traced == plain
    assert all(chunk["choices"] for chunk in traced)
    attrs = only_span(exporter).attributes
    assert attrs["octotrace.request.stream"] is True
    assert attrs["gen_ai.response.id"] == "chatcmpl-stream-0001"
    assert attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == 52
    assert attrs["gen_ai.usage.output_tokens"] == 118
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 16
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 82


def test_it_leaves_the_callers_include_usage_chunk_alone(
    exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    plain = collect(client.chat.completions.create(**kwargs))

    oi.instrument_openai()
    try:
        traced = collect(client.chat.completions.create(**kwargs))
    finally:
        oi.uninstrument_openai()

    assert traced == plain
    assert traced[-1]["choices"] == []
    assert traced[-1]["usage"]["prompt_tokens"] == 52
    assert only_span(exporter).attributes["gen_ai.usage.input_tokens"] == 52


@pytest.mark.parametrize("caller_usage", [False, True])
def test_async_streams_match_and_record_usage(
    caller_usage: bool, exporter: InMemorySpanExporter, server: FakeServer, async_client: openai.AsyncOpenAI
) -> None:
    server.reply = {"content": "About $0.30 a day.", "tool_calls": [SEARCH_CALL], "finish": "tool_calls"}
    kwargs: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "stream": True}
    if caller_usage:
        kwargs["stream_options"] = {"include_usage": True}

    async def run() -> list[dict[str, Any]]:
        return await acollect(await async_client.chat.completions.create(**kwargs))

    plain = asyncio.run(run())
    oi.instrument_openai()
    try:
        traced = asyncio.run(run())
    finally:
        oi.uninstrument_openai()

    assert traced == plain
    assert server.requests[-1]["stream_options"] == {"include_usage": True}
    attrs = only_span(exporter).attributes
    assert attrs["gen_ai.usage.input_tokens"] == 52
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 82
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs["octotrace.response.tool_calls"] == ("search_docs",)


def test_a_stream_works_as_a_context_manager(
    instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert isinstance(stream, openai.Stream)
        assert stream.response.status_code == 200
        chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "It costs about $0.30 a day."
    assert only_span(exporter).attributes["gen_ai.usage.output_tokens"] == 118


def test_a_stream_closed_early_ends_its_span(
    instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(stream)
    assert not exporter.get_finished_spans()

    stream.close()

    span = only_span(exporter)
    assert "gen_ai.usage.input_tokens" not in span.attributes


def test_streamed_tool_calls_and_reasoning_are_accumulated(
    instrumented: None, content_on: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    reasoning = "I need the docs before I answer this one."
    server.reply = {
        "content": None,
        "reasoning_content": reasoning,
        "tool_calls": [SEARCH_CALL],
        "finish": "tool_calls",
    }
    server.usage = {"prompt_tokens": 125, "completion_tokens": 124, "total_tokens": 249}

    collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    attrs = only_span(exporter).attributes
    assert attrs["octotrace.response.tool_calls"] == ("search_docs",)
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == tok(reasoning)
    assert attrs["octotrace.usage.reasoning_estimated"] is True
    output = json.loads(attrs["gen_ai.output.messages"])
    assert output[0]["parts"] == [
        {"type": "reasoning", "content": reasoning},
        {"type": "tool_call", "id": "call_1", "name": "search_docs", "arguments": {"query": "nemotron pricing"}},
    ]
    assert output[0]["finish_reason"] == "tool_calls"


def test_a_stream_dropped_half_read_ends_its_span(
    instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    next(stream)
    del stream
    gc.collect()

    assert only_span(exporter).attributes["gen_ai.request.model"] == MODEL


def test_the_stream_helper_works_on_the_proxy(
    instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        completion = stream.get_final_completion()

    assert completion.choices[0].message.content == "It costs about $0.30 a day."
    assert only_span(exporter).attributes["gen_ai.usage.input_tokens"] == 52


def test_raw_responses_are_left_to_the_caller(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = collect(raw.parse())

    assert "stream_options" not in server.requests[-1]
    assert all(chunk["choices"] for chunk in chunks)
    assert only_span(exporter).attributes["octotrace.request.stream"] is True


def test_a_noop_tracer_sends_the_request_untouched(
    monkeypatch: pytest.MonkeyPatch, instrumented: None, server: FakeServer, client: openai.OpenAI
) -> None:
    monkeypatch.setattr(oi, "_tracer", trace.NoOpTracer())

    collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "stream_options" not in server.requests[-1]

    # A budget still needs the usage.
    with _budget.open_budget(name="research_report", span=None, usd=None, tokens=10_000) as budget:
        chunks = collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert server.requests[-1]["stream_options"] == {"include_usage": True}
    assert all(chunk["choices"] for chunk in chunks)
    assert budget.spent_tokens == 52 + 118


# --- embeddings ------------------------------------------------------------------------------


def test_it_records_embeddings(instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI) -> None:
    inputs = ["nemotron pricing", "support bot volume"]
    client.embeddings.create(model=EMBED_MODEL, input=inputs, encoding_format="float")

    span = only_span(exporter, "embeddings ")
    assert span.name == f"embeddings {EMBED_MODEL}"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.provider.name"] == "nvidia"
    assert span.attributes["gen_ai.request.model"] == EMBED_MODEL
    assert span.attributes["gen_ai.usage.input_tokens"] == sum(tok(text) for text in inputs)


def test_it_records_async_embeddings(
    instrumented: None, exporter: InMemorySpanExporter, async_client: openai.AsyncOpenAI
) -> None:
    asyncio.run(async_client.embeddings.create(model=EMBED_MODEL, input="nemotron pricing", encoding_format="float"))

    assert only_span(exporter, "embeddings ").attributes["gen_ai.usage.input_tokens"] == tok("nemotron pricing")


# --- content and fingerprints ----------------------------------------------------------------


def test_it_captures_content_when_on(
    instrumented: None, content_on: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.reply = {"content": "About $0.30.", "reasoning_content": "Multiply."}
    client.chat.completions.create(model=MODEL, messages=MESSAGES)

    attrs = only_span(exporter).attributes
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]},
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[1]["content"]}]},
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": "Multiply."}, {"type": "text", "content": "About $0.30."}],
            "finish_reason": "stop",
        }
    ]


def test_it_records_no_text_when_content_is_off(
    instrumented: None, content_off: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    server.reply = {"content": "answer-marker-77", "reasoning_content": "thought-marker-99"}
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    collect(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    for span in exporter.get_finished_spans():
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes
        flat = json.dumps({key: str(value) for key, value in span.attributes.items()})
        for marker in ("secret-marker-42", "answer-marker-77", "thought-marker-99", "careful analyst"):
            assert marker not in flat


def test_it_fingerprints_input_messages_without_content(
    instrumented: None, content_off: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    history = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [SEARCH_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Nemotron costs little."},
    ]
    client.chat.completions.create(model=MODEL, messages=history)
    client.chat.completions.create(model=MODEL, messages=iter(history))

    first, second = exporter.get_finished_spans()
    hashes = first.attributes["octotrace.input.message_hashes"]
    assert len(hashes) == 4
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)
    assert len(set(hashes)) == 4
    assert second.attributes["octotrace.input.message_hashes"] == hashes
    assert first.attributes["octotrace.input.message_roles"] == ("system", "user", "assistant", "tool")
    tokens = first.attributes["octotrace.input.message_tokens"]
    assert tokens[0] == tok(MESSAGES[0]["content"])
    assert tokens[1] == tok(MESSAGES[1]["content"])
    assert tokens[2] > 0
    assert tokens[3] == tok("Nemotron costs little.")
    # The one-shot iterator was materialized for the request, not exhausted by us.
    assert second.attributes["gen_ai.usage.input_tokens"] == 52


def test_fingerprints_ignore_the_shape_of_text_content() -> None:
    from octotrace._fingerprint import fingerprint_message

    as_string = fingerprint_message({"role": "user", "content": "hello"})
    as_parts = fingerprint_message({"role": "user", "content": [{"type": "text", "text": "hello"}]})
    other_role = fingerprint_message({"role": "system", "content": "hello"})

    assert as_string == as_parts
    assert as_string[0] != other_role[0]
    assert as_string[0] == hashlib.sha256(b'["user","hello",[],null,null,[]]').hexdigest()[:16]


def test_content_capture_follows_the_environment_before_init(monkeypatch: pytest.MonkeyPatch) -> None:
    octotrace.shutdown()  # not initialized: the environment decides
    assert not octotrace._config.config().initialized
    monkeypatch.setenv("OCTOTRACE_CAPTURE_CONTENT", "true")
    assert oi._capture_content() is True
    monkeypatch.setenv("OCTOTRACE_CAPTURE_CONTENT", "0")
    assert oi._capture_content() is False


def test_a_failure_in_our_bookkeeping_does_not_fail_the_call(
    monkeypatch: pytest.MonkeyPatch, instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    def broken(messages: Any) -> Any:
        raise RuntimeError("bug in octotrace")

    monkeypatch.setattr(oi, "fingerprint_messages", broken)

    response = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert response.choices[0].message.content == "It costs about $0.30 a day."


# --- budgets ---------------------------------------------------------------------------------


def test_a_spent_budget_stops_the_call_before_it_is_sent(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    with _budget.open_budget(name="research_report", span=None, usd=None, tokens=100) as budget:
        budget.spent_tokens = 100
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(BudgetExceeded):
            client.embeddings.create(model=EMBED_MODEL, input="x")

    assert server.requests == []
    assert not exporter.get_finished_spans()


def test_a_spent_budget_in_warn_mode_lets_the_call_through(
    instrumented: None, exporter: InMemorySpanExporter, server: FakeServer, client: openai.OpenAI
) -> None:
    with _budget.open_budget(name="research_report", span=None, usd=None, tokens=100, mode="warn") as budget:
        budget.spent_tokens = 100
        client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert len(server.requests) == 1
    assert budget.spent_tokens == 100 + 52 + 118


def test_it_charges_the_budget_and_records_the_cost(
    instrumented: None, exporter: InMemorySpanExporter, client: openai.OpenAI
) -> None:
    with _budget.open_budget(name="research_report", span=None, usd="10", tokens=None) as budget:
        collect(client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, stream=True))

    assert budget.spent_tokens == 52 + 118
    assert budget.spent_usd > 0
    assert only_span(exporter).attributes["gen_ai.usage.cost"] == pytest.approx(float(budget.spent_usd))


# --- patching --------------------------------------------------------------------------------


def test_uninstrument_restores_the_original_methods() -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings

    classes = (Completions, AsyncCompletions, Embeddings, AsyncEmbeddings)
    originals = [cls.__dict__["create"] for cls in classes]

    oi.instrument_openai()
    oi.instrument_openai()
    try:
        for cls, original in zip(classes, originals, strict=True):
            assert cls.__dict__["create"] is not original
            assert cls.__dict__["create"].__octotrace_original__ is original
    finally:
        oi.uninstrument_openai()
        oi.uninstrument_openai()

    assert [cls.__dict__["create"] for cls in classes] == originals
