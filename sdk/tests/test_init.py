"""octotrace.init / shutdown: configuration, export, coexistence, context into thread pools."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import parent_id, subprocess_env
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import octotrace
from octotrace import _config, _prices, _setup

ORIGINAL_SUBMIT = concurrent.futures.ThreadPoolExecutor.submit


def octotrace_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "octotrace" and r.levelno >= logging.WARNING]


# -- a fake Octotrace server: the OTLP/HTTP receiver and the price list ----------------------------


@dataclass
class FakeServer:
    url: str
    requests: list[tuple[str, str, Message, bytes]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    received: list[tuple[str, str, Message, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append((self.command, self.path, self.headers, self.rfile.read(length)))  # case-insensitive

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._record()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self._record()
            body = json.dumps(
                {"data": [{"provider": "", "model_pattern": "house-model", "input": "1", "output": "2"}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield FakeServer(url=f"http://127.0.0.1:{httpd.server_address[1]}", requests=received)
    httpd.shutdown()
    httpd.server_close()


# -- export ----------------------------------------------------------------------------------------


def test_it_exports_spans_to_the_server_with_the_api_key(server, monkeypatch):
    monkeypatch.setenv("OCTOTRACE_ENDPOINT", server.url + "/")
    monkeypatch.setenv("OCTOTRACE_API_KEY", "otk_alice")
    octotrace.init(instrument=False)

    @octotrace.agent
    def planner() -> None: ...

    planner()
    octotrace.shutdown()  # flushes the batch

    prices, traces = server.requests
    assert prices[:2] == ("GET", "/api/v1/prices")
    assert prices[2]["Authorization"] == "Bearer otk_alice"
    assert _prices.source() == "server"
    assert _prices.find(model="house-model") is not None
    method, path, headers, body = traces
    assert (method, path) == ("POST", "/v1/traces")
    assert headers["Authorization"] == "Bearer otk_alice"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert b"invoke_agent planner" in body


def test_without_a_server_spans_are_dropped_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(_setup, "EXPORT_TIMEOUT_S", 1.0)  # keep the exporter's retries short
    caplog.set_level(logging.DEBUG)
    # Nothing listens; the price fetch fails too, and falls back to the bundled catalog quietly.
    octotrace.init("http://127.0.0.1:1", "otk_alice", instrument=False)

    @octotrace.agent
    def planner(x: int) -> int:
        return x + 1

    assert planner(1) == 2
    assert trace.get_tracer_provider().force_flush()  # the first failed batch
    assert planner(2) == 3
    octotrace.shutdown()  # a second failed batch, then shutdown: no exception

    warnings = octotrace_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "http://127.0.0.1:1/v1/traces" in warnings[0].getMessage()
    # The OTLP exporter's own per-batch errors and retry warnings are kept quiet.
    assert [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")] == []
    assert _prices.source() == "bundled"


def test_without_an_endpoint_nothing_is_exported_and_init_says_so(caplog):
    caplog.set_level(logging.WARNING)
    octotrace.init(instrument=False, fetch_prices=False)

    with octotrace.agent("a"):
        pass

    (warning,) = octotrace_warnings(caplog)
    assert "no endpoint" in warning.getMessage()
    assert _config.config().traces_endpoint is None


# -- configuration ---------------------------------------------------------------------------------


def test_it_reads_its_configuration_from_the_environment(monkeypatch):
    monkeypatch.setenv("OCTOTRACE_ENDPOINT", "http://octotrace.internal:8000/")
    monkeypatch.setenv("OCTOTRACE_API_KEY", "otk_bob")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "crew")
    monkeypatch.setenv("OCTOTRACE_CAPTURE_CONTENT", "true")
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)

    cfg = _config.config()
    assert cfg.endpoint == "http://octotrace.internal:8000"
    assert cfg.traces_endpoint == "http://octotrace.internal:8000/v1/traces"
    assert cfg.api_key == "otk_bob"
    assert cfg.headers == {"authorization": "Bearer otk_bob"}
    assert cfg.service_name == "crew"
    assert cfg.capture_content is True


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("OCTOTRACE_ENDPOINT", "http://from-env:8000")
    monkeypatch.setenv("OCTOTRACE_API_KEY", "otk_env")
    monkeypatch.setenv("OCTOTRACE_CAPTURE_CONTENT", "1")
    octotrace.init(
        "http://from-args:9000",
        "otk_args",
        "svc",
        False,
        span_exporter=InMemorySpanExporter(),
        fetch_prices=False,
        instrument=False,
    )
    cfg = _config.config()
    assert (cfg.endpoint, cfg.api_key, cfg.service_name, cfg.capture_content) == (
        "http://from-args:9000",
        "otk_args",
        "svc",
        False,
    )


def test_it_falls_back_to_the_standard_otlp_variables(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20otk_carol,x-team=red")
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    cfg = _config.config()
    assert cfg.traces_endpoint == "http://collector:4318/v1/traces"
    assert cfg.api_key == "otk_carol"
    assert cfg.headers == {"authorization": "Bearer otk_carol", "x-team": "red"}


def test_a_signal_specific_otlp_endpoint_is_used_as_is(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://octotrace:8000/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318")
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    cfg = _config.config()
    assert cfg.traces_endpoint == "http://octotrace:8000/v1/traces"
    assert cfg.endpoint == "http://octotrace:8000"  # for the price list


def test_content_capture_is_off_by_default():
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    assert _config.config().capture_content is False


def test_a_bad_boolean_fails_loudly(monkeypatch):
    monkeypatch.setenv("OCTOTRACE_CAPTURE_CONTENT", "maybe")
    with pytest.raises(ValueError, match="OCTOTRACE_CAPTURE_CONTENT"):
        octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)


def test_without_fetching_it_loads_the_bundled_prices():
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    assert _prices.source() == "bundled"


# -- lifecycle -------------------------------------------------------------------------------------


def test_init_twice_warns_once_and_changes_nothing(caplog):
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    octotrace.init(span_exporter=first, fetch_prices=False, instrument=False, batch=False)
    caplog.set_level(logging.WARNING)
    octotrace.init(span_exporter=second, fetch_prices=False, instrument=False, batch=False, capture_content=True)

    (warning,) = octotrace_warnings(caplog)
    assert "already" in warning.getMessage()
    assert _config.config().capture_content is False
    with octotrace.agent("a"):
        pass
    assert len(first.get_finished_spans()) == 1
    assert second.get_finished_spans() == ()


def test_init_after_shutdown_starts_again_without_duplicate_spans():
    for _ in range(3):
        exporter = InMemorySpanExporter()
        octotrace.init(span_exporter=exporter, fetch_prices=False, instrument=False, batch=False)
        with octotrace.agent("a"):
            pass
        octotrace.shutdown()
        with octotrace.agent("after shutdown"):
            pass
        assert [s.name for s in exporter.get_finished_spans()] == ["invoke_agent a"]


def test_shutdown_without_init_is_harmless():
    octotrace.shutdown()
    octotrace.shutdown()


def test_the_thread_pool_patch_is_installed_once_and_undone_by_shutdown(exporter):
    patched = concurrent.futures.ThreadPoolExecutor.submit
    assert patched is not ORIGINAL_SUBMIT
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)  # ignored
    assert concurrent.futures.ThreadPoolExecutor.submit is patched
    octotrace.shutdown()
    assert concurrent.futures.ThreadPoolExecutor.submit is ORIGINAL_SUBMIT

    # Unpatched: a thread starts from an empty context, as in plain Python.
    with octotrace.workflow("w"):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert pool.submit(lambda: trace.get_current_span().is_recording()).result() is False


def test_submitted_work_keeps_the_callers_context(exporter):
    with octotrace.workflow("w") as root:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert pool.submit(trace.get_current_span).result() is root
            assert pool.submit(lambda a, *, b: a + b, 1, b=2).result() == 3


# -- coexistence with the application's tracing ---------------------------------------------------


def test_it_adds_to_an_application_tracer_provider_passed_in():
    app_exporter, our_exporter = InMemorySpanExporter(), InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    octotrace.init(
        tracer_provider=app_provider, span_exporter=our_exporter, fetch_prices=False, instrument=False, batch=False
    )

    with octotrace.workflow("w"):
        with app_provider.get_tracer("app").start_as_current_span("app work"):
            with octotrace.agent("a"):
                pass

    names = ["invoke_agent a", "app work", "invoke_workflow w"]
    assert [s.name for s in app_exporter.get_finished_spans()] == names
    assert [s.name for s in our_exporter.get_finished_spans()] == names
    agent, app_work, root = our_exporter.get_finished_spans()
    assert parent_id(agent) == app_work.context.span_id
    assert parent_id(app_work) == root.context.span_id

    octotrace.shutdown()
    with app_provider.get_tracer("app").start_as_current_span("later"):
        pass
    assert app_exporter.get_finished_spans()[-1].name == "later"  # the application's processor stays
    assert len(our_exporter.get_finished_spans()) == 3


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_it_adds_to_the_applications_global_tracer_provider():
    # A fresh process: the global provider can be set only once per process.
    out = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import octotrace

        app_exporter, ours = InMemorySpanExporter(), InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(provider)
        octotrace.init(span_exporter=ours, fetch_prices=False, instrument=False, batch=False)
        assert trace.get_tracer_provider() is provider
        with octotrace.agent("a"):
            with trace.get_tracer("app").start_as_current_span("app work"):
                pass
        octotrace.shutdown()
        print(sorted(s.name for s in app_exporter.get_finished_spans()))
        print(sorted(s.name for s in ours.get_finished_spans()))
        """
    )
    assert out.splitlines() == ["['app work', 'invoke_agent a']"] * 2


def test_without_a_provider_it_sets_its_own_with_the_service_name():
    out = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import octotrace

        ours = InMemorySpanExporter()
        octotrace.init(service_name="crew", resource_attributes={"deployment.environment": "test"},
                       span_exporter=ours, fetch_prices=False, instrument=False, batch=False)
        assert isinstance(trace.get_tracer_provider(), TracerProvider)
        with octotrace.agent("a"):
            pass
        (span,) = ours.get_finished_spans()
        print(span.resource.attributes["service.name"], span.resource.attributes["deployment.environment"])
        """
    )
    assert out.split() == ["crew", "test"]


def test_pending_spans_are_flushed_at_exit():
    out = run_python(
        """
        import atexit
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import octotrace

        ours = InMemorySpanExporter()
        atexit.register(lambda: print(len(ours.get_finished_spans())))  # runs after octotrace's
        octotrace.init(span_exporter=ours, fetch_prices=False, instrument=False)  # batched
        with octotrace.agent("a"):
            pass
        """
    )
    assert out.strip() == "1"


def test_it_instruments_openai_and_shutdown_undoes_it():
    completions = pytest.importorskip("openai.resources.chat.completions").Completions
    original = completions.create
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    assert completions.create is original
    octotrace.shutdown()

    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False)
    assert completions.create is not original
    octotrace.shutdown()
    assert completions.create is original


def test_the_service_name_defaults_to_the_script_name():
    octotrace.init(span_exporter=InMemorySpanExporter(), fetch_prices=False, instrument=False)
    assert _config.config().service_name == Path(sys.argv[0]).stem
