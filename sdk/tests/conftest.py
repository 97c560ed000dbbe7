"""SDK fixtures. The SDK is initialised per test with an in-memory exporter and immediate export
(`batch=False`); OpenTelemetry's global tracer provider can be set once per process, so the first
init sets it and later ones add octotrace's processor to it again (what init does with any
application's provider)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import octotrace

CONFIG_VARIABLES = (
    "OCTOTRACE_ENDPOINT",
    "OCTOTRACE_API_KEY",
    "OCTOTRACE_CAPTURE_CONTENT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
)


@pytest.fixture(autouse=True)
def clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No configuration leaks in from the developer's shell, and no test leaves the SDK running."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    octotrace.shutdown()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    octotrace.init(span_exporter=exporter, fetch_prices=False, instrument=False, batch=False)
    yield exporter
    octotrace.shutdown()


@pytest.fixture
def content_exporter() -> Iterator[InMemorySpanExporter]:
    """Like `exporter`, with capture_content on."""
    exporter = InMemorySpanExporter()
    octotrace.init(span_exporter=exporter, fetch_prices=False, instrument=False, batch=False, capture_content=True)
    yield exporter
    octotrace.shutdown()


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    assert len(by_name) == len(spans), f"duplicate span names: {[s.name for s in spans]}"
    return by_name


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
