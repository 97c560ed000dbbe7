"""SDK overhead per call, against a bare OpenTelemetry span measured in the same run.

1. A decorated function (`@octotrace.agent`) vs the same function inside a bare
   `tracer.start_as_current_span` (the OTel SDK cost we build on) vs the bare function.
2. An instrumented chat completion vs the same call uninstrumented, both through the `openai`
   client with an in-memory transport (no network), so the difference is the instrumentation.

Spans go to a processor that drops them (export cost is the exporter's, not the decorator's).

    .venv/bin/python bench/sdk_overhead.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import httpx2
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import octotrace

CALLS = 20_000
CHAT_CALLS = 2_000
REPEATS = 5


class Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def per_call(fn, calls: int) -> float:
    """Median over REPEATS runs of the time per call, in microseconds."""
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(runs)


def chat_response(request: httpx2.Request) -> httpx2.Response:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1750000000,
        "model": "nvidia/nemotron-3-nano-30b-a3b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 2,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 16},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    return httpx2.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    octotrace.init(span_exporter=Drop(), fetch_prices=False, instrument=False, batch=False)
    tracer = trace.get_tracer("bench")

    def work() -> int:
        return 1

    @octotrace.agent
    def decorated() -> int:
        return 1

    def bare_span() -> int:
        with tracer.start_as_current_span("invoke_agent bare"):
            return 1

    bare = per_call(work, CALLS)
    otel = per_call(bare_span, CALLS)
    ours = per_call(decorated, CALLS)

    client = openai.OpenAI(
        base_url="https://integrate.api.nvidia.com/v1",
        api_key="x",
        http_client=httpx2.Client(transport=httpx2.MockTransport(chat_response)),
    )
    messages = [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "hello"}]

    def chat() -> None:
        client.chat.completions.create(model="nvidia/nemotron-3-nano-30b-a3b", messages=messages)

    octotrace.uninstrument_openai()
    chat_plain = per_call(chat, CHAT_CALLS)
    octotrace.instrument_openai()
    chat_traced = per_call(chat, CHAT_CALLS)
    octotrace.shutdown()

    print(f"machine: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"bare function call: {bare:.2f} us")
    print(f"bare OTel span around it: {otel:.2f} us")
    print(f"@octotrace.agent: {ours:.2f} us = {ours / otel:.2f}x the bare OTel span (target <= 1.5x)")
    print(f"chat call, uninstrumented (in-memory transport): {chat_plain:.0f} us")
    print(f"chat call, instrumented: {chat_traced:.0f} us (+{chat_traced - chat_plain:.0f} us per call)")


if __name__ == "__main__":
    main()
