"""Synthetic multi-agent traces made with the OpenTelemetry SDK, for the benchmarks (bench/), and
the in-memory span collector and OTLP encoding the demo records the example crew with.

Made-up data is the demo's business, not the server's: it lives here, with the demo, and bench/
imports it (bench sits on top like the demo; nothing in the server imports either).

Each trace is 20 spans shaped like a real agent run: a workflow, an orchestrator agent that
delegates to a researcher and an analyst, their chat, embeddings and tool calls, with OTel GenAI
attributes (models, token usage including cached and reasoning tokens).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

SPANS_PER_TRACE = 20
MODELS = {
    "orchestrator": "nvidia/llama-3.1-nemotron-ultra-253b-v1",
    "researcher": "nvidia/llama-3.3-nemotron-super-49b-v1.5",
    "analyst": "nvidia/nemotron-3-nano-30b-a3b",
}
EMBEDDING_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"


class Collector(SpanExporter):
    """Keeps exported spans in memory."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def make_spans(traces: int, *, seed: int = 0, service_name: str = "octotrace-synthetic") -> list[ReadableSpan]:
    """Record `traces` synthetic traces in memory and return their finished spans."""
    collector = Collector()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(collector))
    tracer = provider.get_tracer("octotrace.synthetic", "1")
    rng = random.Random(seed)
    for _ in range(traces):
        _one_trace(tracer, rng)
    provider.shutdown()
    return collector.spans


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest protobuf body for these spans, as the OTLP exporter sends it."""
    return encode_spans(spans).SerializePartialToString()


def _chat(tracer, rng: random.Random, agent: str, *, reasoning: bool, error: bool = False) -> None:
    model = MODELS[agent]
    prompt = rng.randint(50, 4000)
    cached = 16 * (rng.randint(0, prompt) // 16)
    thinking = rng.randint(20, 400) if reasoning else 0
    completion = thinking + rng.randint(10, 600)
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "nvidia",
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.agent.name": agent,
                "gen_ai.usage.input_tokens": prompt,
                "gen_ai.usage.output_tokens": completion,
                "gen_ai.usage.cache_read.input_tokens": cached,
                "gen_ai.usage.reasoning.output_tokens": thinking,
                "server.address": "integrate.api.nvidia.com",
            }
        )
        if error:
            span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))


def _tool(tracer, name: str, agent: str) -> None:
    with tracer.start_as_current_span(f"execute_tool {name}") as span:
        span.set_attributes(
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.agent.name": agent}
        )


def _one_trace(tracer, rng: random.Random) -> None:
    with tracer.start_as_current_span("invoke_workflow research_report") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_workflow")
        root.set_attribute("gen_ai.conversation.id", f"conv-{rng.randrange(10**9)}")
        with tracer.start_as_current_span("invoke_agent orchestrator") as orchestrator:
            orchestrator.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "orchestrator"})
            _chat(tracer, rng, "orchestrator", reasoning=True)
            with tracer.start_as_current_span("invoke_agent researcher") as researcher:
                researcher.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"})
                with tracer.start_as_current_span(f"embeddings {EMBEDDING_MODEL}", kind=SpanKind.CLIENT) as emb:
                    emb.set_attributes(
                        {
                            "gen_ai.operation.name": "embeddings",
                            "gen_ai.request.model": EMBEDDING_MODEL,
                            "gen_ai.usage.input_tokens": rng.randint(5, 200),
                        }
                    )
                for _ in range(2):
                    _chat(tracer, rng, "researcher", reasoning=True)
                    _tool(tracer, "search_docs", "researcher")
                _chat(tracer, rng, "researcher", reasoning=True)
            with tracer.start_as_current_span("invoke_agent analyst") as analyst:
                analyst.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "analyst"})
                for _ in range(3):
                    _chat(tracer, rng, "analyst", reasoning=False, error=rng.random() < 0.02)
                    _tool(tracer, "calculator", "analyst")
                _chat(tracer, rng, "analyst", reasoning=False)
            _tool(tracer, "write_report", "orchestrator")
            _chat(tracer, rng, "orchestrator", reasoning=True)
