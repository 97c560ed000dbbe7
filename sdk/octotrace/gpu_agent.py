"""`octotrace gpu-agent`: sample this host's NVIDIA GPUs and export them as OTLP metrics.

For GPU hosts that run no Octotrace worker (a NIM box): it reads every GPU through NVML each
`--interval` seconds and POSTs the readings every `--export-interval` seconds to the server's
`/v1/metrics`, with the OpenTelemetry hardware names (`hw.gpu.utilization`, `hw.gpu.memory.usage`,
`hw.gpu.power.draw`, `hw.gpu.energy.consumed`, ...) and the host, GPU index, UUID and name as
attributes. Each reading keeps its own timestamp, so a batch of ten one-second readings is ten
samples on the server, not one.

Defaults come from the variables `octotrace.init` reads: OCTOTRACE_ENDPOINT (else
OTEL_EXPORTER_OTLP_ENDPOINT; OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is a full URL) and
OCTOTRACE_API_KEY (else a bearer token in OTEL_EXPORTER_OTLP_HEADERS).

Without NVML or a GPU it says so once and exits 0 (nothing to do is not a failure, and a service
manager restarting it would only say the same again).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from octotrace import __version__
from octotrace._config import env, parse_headers
from octotrace.nvml import GpuReading, NvmlReader

log = logging.getLogger("octotrace.gpu")

METRICS_PATH = "/v1/metrics"
SCOPE = "octotrace.gpu_agent"
# Readings kept while the server is unreachable (an hour of 1 Hz readings), oldest dropped first.
MAX_BUFFERED_READINGS = 3600
# Readings per export request: 60 readings of 8 GPUs are about 0.5 MB of protobuf before gzip.
EXPORT_CHUNK = 60


def resolve_target(*, endpoint: str | None, api_key: str | None) -> tuple[str | None, dict[str, str]]:
    """(metrics URL, headers) from the options, else the environment `octotrace.init` reads."""
    url = None
    if endpoint:
        url = endpoint.rstrip("/") + METRICS_PATH
    elif full := env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        url = full
    elif base := env("OCTOTRACE_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT"):
        url = base.rstrip("/") + METRICS_PATH
    headers = parse_headers(env("OTEL_EXPORTER_OTLP_METRICS_HEADERS") or env("OTEL_EXPORTER_OTLP_HEADERS"))
    api_key = api_key or env("OCTOTRACE_API_KEY")
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return url, headers


def metrics_data(batches: Sequence[Sequence[GpuReading]], *, host: str, start_time_unix_nano: int) -> Any:
    """The readings as OpenTelemetry SDK MetricsData (what the OTLP exporter sends)."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    points: dict[str, list[NumberDataPoint]] = {}
    limits: dict[str, NumberDataPoint] = {}

    def add(name: str, attrs: dict[str, Any], time_ns: int, value: float | int | None) -> None:
        if value is not None:
            points.setdefault(name, []).append(NumberDataPoint(attrs, start_time_unix_nano, time_ns, value))

    for readings in batches:
        for r in readings:
            attrs = {
                "hw.id": r.gpu.uuid,
                "hw.name": r.gpu.name,
                "hw.type": "gpu",
                "hw.vendor": "NVIDIA",
                "hw.gpu.index": r.gpu.index,
                "host.name": host,
            }
            t = r.time_unix_nano
            add(
                "hw.gpu.utilization",
                {**attrs, "hw.gpu.task": "general"},
                t,
                None if r.utilization_gpu is None else r.utilization_gpu / 100,
            )
            add(
                "hw.gpu.memory.controller.utilization",
                attrs,
                t,
                None if r.utilization_memory is None else r.utilization_memory / 100,
            )
            add("hw.gpu.memory.usage", attrs, t, r.memory_used_bytes)
            add("hw.gpu.power.draw", attrs, t, None if r.power_mw is None else r.power_mw / 1000)
            add("hw.gpu.energy.consumed", attrs, t, None if r.energy_mj is None else r.energy_mj / 1000)
            add("hw.gpu.temperature", attrs, t, r.temperature_c)
            add("hw.gpu.clock.sm", attrs, t, r.sm_clock_mhz)
            if r.gpu.memory_total_bytes is not None:
                limits[r.gpu.uuid] = NumberDataPoint(attrs, start_time_unix_nano, t, r.gpu.memory_total_bytes)

    cumulative = AggregationTemporality.CUMULATIVE
    kinds = {
        # name: (unit, description, data factory)
        "hw.gpu.utilization": ("1", "Fraction of time a kernel ran (NVML utilization.gpu)", Gauge),
        "hw.gpu.memory.controller.utilization": ("1", "Fraction of time memory was read or written", Gauge),
        "hw.gpu.memory.usage": ("By", "GPU memory used", lambda p: Sum(p, cumulative, False)),
        "hw.gpu.memory.limit": ("By", "GPU memory size", lambda p: Sum(p, cumulative, False)),
        "hw.gpu.power.draw": ("W", "Power draw", Gauge),
        "hw.gpu.energy.consumed": ("J", "Energy since the driver loaded", lambda p: Sum(p, cumulative, True)),
        "hw.gpu.temperature": ("Cel", "GPU temperature", Gauge),
        "hw.gpu.clock.sm": ("MHz", "SM clock", Gauge),
    }
    if limits:
        points["hw.gpu.memory.limit"] = list(limits.values())
    metrics = [
        Metric(name=name, description=kinds[name][1], unit=kinds[name][0], data=kinds[name][2](data_points))
        for name, data_points in points.items()
    ]
    resource = Resource.create({"service.name": "octotrace-gpu-agent", "host.name": host})
    scope = InstrumentationScope(SCOPE, __version__)
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, metrics, "")], "")])


class GpuAgent:
    def __init__(
        self,
        *,
        url: str,
        headers: dict[str, str],
        interval: float,
        export_interval: float,
        host: str | None = None,
        reader: NvmlReader | None = None,
        exporter: Any = None,
    ) -> None:
        self.reader = reader or NvmlReader(host=host)
        self.url = url
        self.interval = interval
        self.export_interval = export_interval
        self.started_ns = time.time_ns()
        self._buffer: list[list[GpuReading]] = []
        self._failing = False
        self.stop_event = threading.Event()
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http import Compression
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter(endpoint=url, headers=headers, timeout=10, compression=Compression.Gzip)
        self.exporter = exporter
        self.exported_readings = 0

    def run(self, *, count: int | None = None) -> int:
        """Sample until stopped (or `count` readings), exporting every export_interval. Exit code."""
        if not self.reader.open():
            return 0  # the reader logged why, once
        taken = 0
        next_read = time.monotonic()
        next_export = next_read + self.export_interval
        try:
            while not self.stop_event.is_set():
                self._buffer.append(self.reader.read())
                taken += 1
                if len(self._buffer) > MAX_BUFFERED_READINGS:
                    del self._buffer[: len(self._buffer) - MAX_BUFFERED_READINGS]
                if count is not None and taken >= count:
                    break
                if time.monotonic() >= next_export:
                    self.flush()
                    next_export = time.monotonic() + self.export_interval
                # A fixed schedule, not sleep(interval) after the work, so readings do not drift.
                next_read += self.interval
                self.stop_event.wait(max(0.0, next_read - time.monotonic()))
        finally:
            self.flush()
            self.exporter.shutdown()
            self.reader.close()
        return 0

    def flush(self) -> bool:
        """Export the buffered readings, at most EXPORT_CHUNK per request (after an outage the
        backlog goes out in requests well under the server's body limit). Unsent ones stay."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        while self._buffer:
            chunk = self._buffer[:EXPORT_CHUNK]
            data = metrics_data(chunk, host=self.reader.host, start_time_unix_nano=self.started_ns)
            if self.exporter.export(data) != MetricExportResult.SUCCESS:
                break
            self.exported_readings += len(chunk)
            del self._buffer[: len(chunk)]
        if not self._buffer:
            if self._failing:
                log.info("octotrace gpu-agent: %s takes metrics again", self.url)
                self._failing = False
            return True
        if not self._failing:
            log.warning("octotrace gpu-agent: %s did not take the metrics; keeping them and retrying", self.url)
            self._failing = True
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="server base URL (default: OCTOTRACE_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--api-key", help="project API key (default: OCTOTRACE_API_KEY)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default 1)")
    parser.add_argument("--export-interval", type=float, default=10.0, help="seconds between exports (default 10)")
    parser.add_argument("--host", help="host name to report (default: this machine's)")
    parser.add_argument("--count", type=int, help="stop after this many readings (for checks)")


def main(args: argparse.Namespace) -> int:
    if args.interval <= 0 or args.export_interval <= 0:
        print("octotrace gpu-agent: --interval and --export-interval must be > 0", file=sys.stderr)
        return 2
    url, headers = resolve_target(endpoint=args.endpoint, api_key=args.api_key)
    if url is None:
        print("octotrace gpu-agent: no endpoint: pass --endpoint or set OCTOTRACE_ENDPOINT", file=sys.stderr)
        return 2
    if "authorization" not in headers:
        print("octotrace gpu-agent: no API key: pass --api-key or set OCTOTRACE_API_KEY", file=sys.stderr)
        return 2
    agent = GpuAgent(
        url=url, headers=headers, interval=args.interval, export_interval=args.export_interval, host=args.host
    )
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: agent.stop_event.set())
    return agent.run(count=args.count)
