"""`octotrace.init()` / `octotrace.shutdown()`: export, and the patches they install.

The configuration they start from (arguments, else OCTOTRACE_* / OTEL_* variables) is read by
`octotrace._config`, a lower module the instrumentation reads too.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from octotrace import _config, _prices, _spans
from octotrace._config import Config
from octotrace.instrumentation.openai import instrument_openai, uninstrument_openai

log = logging.getLogger("octotrace")

# Short, so a flush at exit with the server down does not hold the process for long.
EXPORT_TIMEOUT_S = 5.0

# -- export ---------------------------------------------------------------------------------------

_exporting = threading.local()


class _WhileExporting(logging.Filter):
    """Drops the OTLP exporter's own records while octotrace's exporter is the one exporting: it logs
    an error per failed batch (and a warning per retry), we log one warning per outage instead.
    The application's own OTLP exporters, if any, keep their logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_exporting, "active", False)


_QUIET_FILTER = _WhileExporting()


def _otlp_exporter(cfg: Config) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return _ReportingExporter(
        OTLPSpanExporter(endpoint=cfg.traces_endpoint, headers=dict(cfg.headers or {}), timeout=EXPORT_TIMEOUT_S),
        endpoint=cfg.traces_endpoint or "",
        quiet_logger=logging.getLogger(OTLPSpanExporter.__module__),
    )


class _ReportingExporter(SpanExporter):
    """The OTLP exporter, reporting a server that does not take spans with one warning when it
    starts failing (and one info line when it recovers), never an exception or a log per batch."""

    def __init__(self, inner: SpanExporter, *, endpoint: str, quiet_logger: logging.Logger) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._quiet_logger = quiet_logger
        self._failing = False
        quiet_logger.addFilter(_QUIET_FILTER)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        _exporting.active = True
        try:
            return method(*args)
        finally:
            _exporting.active = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        error: Exception | None = None
        try:
            result = self._call(self._inner.export, spans)
        except Exception as exc:  # noqa: BLE001 - reported below; the agent must keep running
            result, error = SpanExportResult.FAILURE, exc
        if result is SpanExportResult.SUCCESS:
            if self._failing:
                self._failing = False
                log.info("octotrace: exporting spans to %s again", self._endpoint)
        elif not self._failing:
            self._failing = True
            log.warning(
                "octotrace: could not export spans to %s%s; spans are dropped until it is reachable",
                self._endpoint,
                f" ({error})" if error else "",
            )
        else:
            log.debug("octotrace: dropped %d spans (%s unreachable)", len(spans), self._endpoint)
        return result

    def shutdown(self) -> None:
        try:
            self._call(self._inner.shutdown)
        finally:
            self._quiet_logger.removeFilter(_QUIET_FILTER)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._call(self._inner.force_flush, timeout_millis)


class _Forwarder(SpanProcessor):
    """Our processor as the provider sees it. An SDK TracerProvider cannot remove a processor, and
    the global provider can be set only once per process, so the forwarder is added once per
    provider and `init`/`shutdown` swap what it forwards to. It also stamps the conversation id in
    force on every span that starts, ours or not (model calls, the application's spans)."""

    def __init__(self) -> None:
        self.target: SpanProcessor | None = None

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        target = self.target
        if target is None:
            return
        conversation_id = _spans.current_conversation_id()
        if conversation_id is not None:
            span.set_attribute(_spans.ATTR_CONVERSATION_ID, conversation_id)
        target.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        target = self.target
        if target is not None:
            target.on_end(span)

    def shutdown(self) -> None:
        target, self.target = self.target, None
        if target is not None:
            target.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        target = self.target
        return target.force_flush(timeout_millis) if target is not None else True


_forwarders: dict[int, tuple[TracerProvider, _Forwarder]] = {}


def _forwarder_for(provider: TracerProvider) -> _Forwarder:
    entry = _forwarders.get(id(provider))
    if entry is None or entry[0] is not provider:
        entry = (provider, _Forwarder())
        provider.add_span_processor(entry[1])
        _forwarders[id(provider)] = entry
    return entry[1]


# -- context into threads -------------------------------------------------------------------------

_original_submit: Callable[..., concurrent.futures.Future[Any]] | None = None


def _submit_in_context(
    self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> concurrent.futures.Future[Any]:
    # The worker thread runs the callable in a copy of the submitter's context: the current span,
    # conversation id and budgets follow the work, as they do into asyncio tasks.
    assert _original_submit is not None
    return _original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)


def _patch_thread_pool() -> None:
    global _original_submit
    if concurrent.futures.ThreadPoolExecutor.submit is _submit_in_context:
        return
    _original_submit = concurrent.futures.ThreadPoolExecutor.submit
    concurrent.futures.ThreadPoolExecutor.submit = _submit_in_context  # type: ignore[method-assign]


def _unpatch_thread_pool() -> None:
    global _original_submit
    # Only our own patch is undone: someone who patched over it keeps theirs.
    if _original_submit is not None and concurrent.futures.ThreadPoolExecutor.submit is _submit_in_context:
        concurrent.futures.ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
        _original_submit = None


# -- init / shutdown ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Running:
    forwarder: _Forwarder
    processor: SpanProcessor
    instrumented: bool


_running: _Running | None = None
_lock = threading.Lock()
_atexit_registered = False


def init(
    endpoint: str | None = None,
    api_key: str | None = None,
    service_name: str | None = None,
    capture_content: bool | None = None,
    *,
    instrument: bool = True,
    tracer_provider: TracerProvider | None = None,
    span_exporter: SpanExporter | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    fetch_prices: bool = True,
    batch: bool = True,
) -> None:
    """Start tracing: export spans to the Octotrace server (or `span_exporter`), load prices for
    budget guards, instrument `openai`, carry context into thread pools. Once per process until
    `shutdown()`; a second call logs a warning and changes nothing.

    `batch=False` exports each span as it ends (SimpleSpanProcessor), for tests and short scripts.
    """
    global _running, _atexit_registered
    with _lock:
        if _running is not None:
            log.warning("octotrace.init() was already called; this call changes nothing")
            return
        cfg = _config.resolve(
            endpoint=endpoint,
            api_key=api_key,
            service_name=service_name,
            capture_content=capture_content,
            instrument=instrument,
            fetch_prices=fetch_prices,
        )

        provider = _provider(tracer_provider, cfg, resource_attributes)
        if span_exporter is None:
            if cfg.traces_endpoint is None:
                log.warning("octotrace: no endpoint (set OCTOTRACE_ENDPOINT or pass endpoint=); spans are not exported")
            else:
                span_exporter = _otlp_exporter(cfg)
        processor: SpanProcessor
        if span_exporter is None:
            processor = SpanProcessor()  # a no-op: spans still carry context, nothing leaves
        elif batch:
            processor = BatchSpanProcessor(span_exporter)
        else:
            processor = SimpleSpanProcessor(span_exporter)

        forwarder = _forwarder_for(provider)
        forwarder.target = processor
        _config.config_set(cfg)
        _spans.configure(tracer=provider.get_tracer("octotrace"), capture_content=cfg.capture_content)
        _patch_thread_pool()
        running = _running = _Running(forwarder=forwarder, processor=processor, instrumented=False)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True

    # Outside the lock: the price fetch is a network call, and neither step touches the state above.
    if cfg.fetch_prices and cfg.endpoint and cfg.api_key:
        _prices.load_from_server(endpoint=cfg.endpoint, api_key=cfg.api_key)
    else:
        _prices.load_bundled()
    if instrument:
        instrument_openai()  # itself a no-op when the openai package is not installed
        running.instrumented = True


def _provider(
    given: TracerProvider | None, cfg: Config, resource_attributes: Mapping[str, Any] | None
) -> TracerProvider:
    if given is not None:
        if not isinstance(given, TracerProvider):
            raise TypeError(f"tracer_provider must be an OpenTelemetry SDK TracerProvider, not {type(given)!r}")
        return given
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The application's (or ours, from an earlier init): add to it, never replace it.
        return current
    attributes: dict[str, Any] = dict(resource_attributes or {})
    if cfg.service_name:
        attributes.setdefault(SERVICE_NAME, cfg.service_name)  # an explicit resource attribute wins
    provider = TracerProvider(resource=Resource.create(attributes))
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    else:
        # Some other (non-SDK) provider is global; ours stays private to octotrace's spans.
        log.warning(
            "octotrace: the global tracer provider is a %s, not an SDK TracerProvider; "
            "octotrace exports its own spans only",
            type(current).__name__,
        )
    return provider


def shutdown() -> None:
    """Flush pending spans, then remove octotrace's processor and patches. Safe to call twice."""
    global _running
    with _lock:
        running, _running = _running, None
        if running is None:
            return
        _unpatch_thread_pool()
        _spans.configure(tracer=None, capture_content=False)
        _config.config_set(Config())
        # The provider's own shutdown (at exit) may have shut our processor down already.
        owned = running.forwarder.target is running.processor
        running.forwarder.target = None
    if running.instrumented:
        uninstrument_openai()
    if owned:
        # Span processors flush on shutdown (the batch one within the export timeout, EXPORT_TIMEOUT_S).
        running.processor.shutdown()
