"""The NVML reader and `octotrace gpu-agent`, on a fake `pynvml` module (no GPU here).

The agent's export goes through the real OTLP/HTTP metrics exporter to a local HTTP server that
records what it receives; the path into Octotrace's own server is tests/test_gpu_agent_e2e.py.
"""

from __future__ import annotations

import gzip
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from octotrace import cli, gpu_agent
from octotrace.nvml import NvmlReader
from octotrace_testing.fake_pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    UNSUPPORTED,
    FakeGpu,
    FakeNvml,
    NvmlFailure,
)

H100 = "NVIDIA H100 80GB HBM3"


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                uuid="GPU-aaaa",
                name=H100,
                values={
                    "utilization": [(80, 35), (90, 40)],
                    "memory_used": [40 * 2**30],
                    "power_mw": [350_000, 400_000],
                    "energy_mj": [1_000_000, 1_400_000],
                    "temperature": [61],
                    "sm_clock": [1980],
                    "processes": [[(4242, 80, 30)], []],
                },
            ),
            # An old GPU: no energy counter, no per-process utilization.
            FakeGpu(
                uuid="GPU-bbbb",
                name="Tesla T4",
                memory_total=16 * 2**30,
                values={
                    "utilization": [(10, 5)],
                    "memory_used": [2**30],
                    "power_mw": [30_000],
                    "energy_mj": [UNSUPPORTED],
                    "temperature": [40],
                    "sm_clock": [585],
                },
            ),
        ]
    )


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch):
    """Put a fake pynvml in sys.modules, as `import pynvml` would find the real one."""

    def install(fake: FakeNvml) -> FakeNvml:
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        return fake

    return install


# --- The reader ---------------------------------------------------------------------------


def test_it_reads_every_field_of_every_gpu(installed) -> None:
    installed(two_gpus())
    reader = NvmlReader(host="nim-1")
    assert reader.open()
    first, second = reader.read(), reader.read()
    h100 = first[0]
    assert (h100.gpu.index, h100.gpu.uuid, h100.gpu.name) == (0, "GPU-aaaa", H100)
    assert h100.gpu.memory_total_bytes == 80 * 2**30
    assert (h100.utilization_gpu, h100.utilization_memory) == (80, 35)
    assert h100.memory_used_bytes == 40 * 2**30
    assert (h100.power_mw, h100.energy_mj, h100.temperature_c, h100.sm_clock_mhz) == (350_000, 1_000_000, 61, 1980)
    assert h100.processes == [{"pid": 4242, "sm": 80, "mem": 30}]
    # The script moves on: the second reading has the next values; no process ran a kernel since.
    assert (second[0].utilization_gpu, second[0].power_mw, second[0].energy_mj) == (90, 400_000, 1_400_000)
    assert second[0].processes == []
    assert first[0].time_unix_nano <= second[0].time_unix_nano


def test_an_unsupported_field_is_skipped_for_that_gpu_only_and_not_asked_again(installed) -> None:
    fake = installed(two_gpus())
    reader = NvmlReader(host="nim-1")
    reader.open()
    for _ in range(3):
        readings = reader.read()
    t4 = readings[1]
    assert t4.energy_mj is None and t4.processes is None
    # Every other field of the same GPU still comes, and the other GPU keeps its counter.
    assert (t4.utilization_gpu, t4.power_mw, t4.temperature_c) == (10, 30_000, 40)
    assert readings[0].energy_mj == 1_400_000
    # Asked once per GPU that lacks it, then never again: 3 readings of the H100, 1 of the T4.
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3 + 1


def test_a_mig_gpu_keeps_its_other_fields(installed) -> None:
    installed(
        FakeNvml(
            [
                FakeGpu(
                    uuid="GPU-mig",
                    mig=True,
                    values={"utilization": [(50, 50)], "memory_used": [10], "power_mw": [200_000], "temperature": [50]},
                )
            ]
        )
    )
    reader = NvmlReader(host="h")
    assert reader.open()
    assert reader.gpus[0].mig_enabled
    reading = reader.read()[0]
    # NVML gives no device-level utilization in MIG mode; memory, power and temperature remain.
    assert reading.utilization_gpu is None and reading.utilization_memory is None
    assert (reading.memory_used_bytes, reading.power_mw, reading.temperature_c) == (10, 200_000, 50)


def test_a_transient_error_loses_the_field_for_one_reading_and_warns_once(installed, caplog) -> None:
    gpu = FakeGpu(
        uuid="GPU-x",
        values={"power_mw": [NvmlFailure(NVML_ERROR_GPU_IS_LOST), NvmlFailure(NVML_ERROR_GPU_IS_LOST), 250_000]},
    )
    installed(FakeNvml([gpu]))
    reader = NvmlReader(host="h")
    reader.open()
    with caplog.at_level(logging.WARNING, logger="octotrace.gpu"):
        powers = [reader.read()[0].power_mw for _ in range(3)]
    assert powers == [None, None, 250_000]
    assert len([r for r in caplog.records if "reading power failed" in r.getMessage()]) == 1


@pytest.mark.parametrize("code", [NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED])
def test_without_nvml_it_says_so_once_and_does_nothing(installed, caplog, code: int) -> None:
    fake = installed(FakeNvml([], init_error=code))
    reader = NvmlReader(host="h")
    with caplog.at_level(logging.WARNING, logger="octotrace.gpu"):
        assert not reader.open()
        assert not reader.open()
        assert reader.read() == []
    assert fake.calls["nvmlInit"] == 1
    assert len(caplog.records) == 1 and "no NVIDIA driver" in caplog.records[0].getMessage()


def test_without_the_package_it_says_so(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    reader = NvmlReader(host="h")
    with caplog.at_level(logging.WARNING, logger="octotrace.gpu"):
        assert not reader.open()
    assert "nvidia-ml-py" in reader.unavailable_reason


def test_with_nvml_but_no_gpu_it_says_so_and_releases_nvml(installed) -> None:
    fake = installed(FakeNvml([]))
    reader = NvmlReader(host="h")
    assert not reader.open()
    assert reader.unavailable_reason == "NVML sees no GPU on this host"
    assert fake.calls["nvmlShutdown"] == 1


# --- The agent ----------------------------------------------------------------------------


class _Capture(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, type[_Capture]]]:
    handler = type("Capture", (_Capture,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def decode(body: bytes) -> dict[tuple[str, str], list[tuple[int, float, dict]]]:
    """{(metric name, GPU uuid): [(time, value, attributes)]} of an ExportMetricsServiceRequest."""
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    out: dict[tuple[str, str], list[tuple[int, float, dict]]] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = getattr(metric, metric.WhichOneof("data"))
                for p in data.data_points:
                    attrs = {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in p.attributes}
                    value = getattr(p, p.WhichOneof("value"))
                    out.setdefault((metric.name, attrs["hw.id"]), []).append((p.time_unix_nano, value, attrs))
    return out


def test_the_agent_exports_every_reading_with_the_hardware_names(installed, collector) -> None:
    url, handler = collector
    installed(two_gpus())
    code = cli.main(
        ["gpu-agent", "--endpoint", url, "--api-key", "otk_test", "--interval", "0.01", "--count", "3", "--host", "n1"]
    )
    assert code == 0
    (headers, body), *more = handler.received
    assert not more  # three readings, one export at the end
    assert headers["authorization"] == "Bearer otk_test"
    points = decode(body)
    utilization = points[("hw.gpu.utilization", "GPU-aaaa")]
    # Each reading keeps its own timestamp: three points, not one.
    assert [v for _, v, _ in utilization] == pytest.approx([0.8, 0.9, 0.9])
    assert len({t for t, _, _ in utilization}) == 3
    attrs = utilization[0][2]
    assert attrs["hw.name"] == H100 and attrs["hw.gpu.index"] == 0 and attrs["host.name"] == "n1"
    assert attrs["hw.gpu.task"] == "general"
    assert [v for _, v, _ in points[("hw.gpu.power.draw", "GPU-aaaa")]] == [350.0, 400.0, 400.0]
    assert [v for _, v, _ in points[("hw.gpu.energy.consumed", "GPU-aaaa")]] == [1000.0, 1400.0, 1400.0]
    assert points[("hw.gpu.memory.limit", "GPU-bbbb")][0][1] == 16 * 2**30
    # The T4 has no energy counter: no point is made up for it.
    assert ("hw.gpu.energy.consumed", "GPU-bbbb") not in points
    assert points[("hw.gpu.temperature", "GPU-bbbb")][0][1] == 40


def test_the_agent_keeps_readings_while_the_server_refuses_them(installed, collector) -> None:
    url, handler = collector
    handler.status = 503
    installed(two_gpus())
    agent = gpu_agent.GpuAgent(
        url=url + "/v1/metrics", headers={"authorization": "Bearer k"}, interval=0.01, export_interval=60
    )
    agent.reader.open()
    agent._buffer.append(agent.reader.read())
    # The exporter retries a 503 with backoff; give it no time to, so the test stays short.
    agent.exporter._timeout = 0.5
    assert not agent.flush()
    handler.status = 200
    assert agent.flush()
    assert agent.exported_readings == 1


def test_without_a_gpu_the_agent_exits_0_without_exporting(installed, collector, caplog) -> None:
    url, handler = collector
    installed(FakeNvml([], init_error=NVML_ERROR_DRIVER_NOT_LOADED))
    assert cli.main(["gpu-agent", "--endpoint", url, "--api-key", "k", "--count", "5"]) == 0
    assert handler.received == []


def test_the_agent_defaults_to_the_variables_init_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTOTRACE_ENDPOINT", "https://octo.example/")
    monkeypatch.setenv("OCTOTRACE_API_KEY", "otk_env")
    assert gpu_agent.resolve_target(endpoint=None, api_key=None) == (
        "https://octo.example/v1/metrics",
        {"authorization": "Bearer otk_env"},
    )
    assert gpu_agent.resolve_target(endpoint="http://x:8000", api_key="otk_arg")[0] == "http://x:8000/v1/metrics"


def test_the_agent_refuses_to_start_without_endpoint_or_key(capsys) -> None:
    assert cli.main(["gpu-agent"]) == 2
    assert "no endpoint" in capsys.readouterr().err
    assert cli.main(["gpu-agent", "--endpoint", "http://x"]) == 2
    assert "no API key" in capsys.readouterr().err


def test_a_backlog_goes_out_in_requests_of_at_most_a_chunk(installed, collector) -> None:
    url, handler = collector
    installed(two_gpus())
    agent = gpu_agent.GpuAgent(url=url + "/v1/metrics", headers={}, interval=1, export_interval=60)
    agent.reader.open()
    for _ in range(2 * gpu_agent.EXPORT_CHUNK + 10):
        agent._buffer.append(agent.reader.read())
    assert agent.flush()
    sizes = [len(decode(body)[("hw.gpu.power.draw", "GPU-aaaa")]) for _, body in handler.received]
    assert sizes == [gpu_agent.EXPORT_CHUNK, gpu_agent.EXPORT_CHUNK, 10]
    assert agent.exported_readings == 2 * gpu_agent.EXPORT_CHUNK + 10
