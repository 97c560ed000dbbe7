"""SIMULATED GPU telemetry for the demo project (`manage.py demo`), so a new user sees the GPU pages.

There is no GPU here: the demo's "GPU" is one simulated H100 behind the fake NVML module
(`octotrace_testing.fake_pynvml`). Everything after NVML is the real code: the SDK's gpu-agent
(`octotrace.gpu_agent.GpuAgent` with its `NvmlReader`) samples the fake while the example crew runs
against the mock NIM, its OTLP metrics exports are stored as metrics batches (`metrics_batch_accept`,
what `POST /v1/metrics` calls), the mock NIM's address is mapped to the device (`endpoint_upsert`,
what `manage.py gpuendpoint` calls), and the worker's own `gpu.attribute` task is enqueued so the
crew's LLM spans get their GPU-seconds, Wh and dollars soon after the worker has stored spans and
samples (the periodic run every minute would also get them, within its 30-minute window).

The device says what it is: its UUID, name and host all contain "simulated".
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExportResult

from octotrace.gpu_agent import GpuAgent
from octotrace.nvml import NvmlReader
from octotrace_testing.fake_pynvml import FakeGpu, FakeNvml
from tracer import otlp
from tracer.celery import task_enqueue
from tracer.gpu.attribution import ATTRIBUTE_TASK
from tracer.gpu.metrics import metrics_batch_accept
from tracer.gpu.prices import endpoint_upsert
from tracer.gpu.samples import DeviceKey, devices_upsert
from tracer.models import GpuMetricsBatch, Project

log = logging.getLogger(__name__)

SIMULATED_UUID = "GPU-simulated-demo-h100-0"
SIMULATED_NAME = "NVIDIA H100 80GB HBM3 (simulated)"
SIMULATED_HOST = "simulated-nim"
ENDPOINT_NAME = "mock NIM (simulated H100)"
# Where octotrace_testing.nim_mock listens (it binds 127.0.0.1 unless told otherwise).
MOCK_NIM_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
USER_AGENT = "octotrace-demo gpu-agent on fake NVML (simulated)"
# Readings 0.1 s apart (a real agent reads every second; the crew runs for about 3 s), with half a
# second of idle GPU before and after the crew so the charts show the load start and stop.
SAMPLE_INTERVAL_S = 0.1
IDLE_MARGIN_S = 0.5
# The attribution task is sent with this delay, so that a worker started with the demo (make run)
# has stored the spans and samples first. The periodic gpu.attribute (every minute) repeats it.
ATTRIBUTE_COUNTDOWN_S = 15


class _Live(Sequence):
    """A fake_pynvml value script whose every entry is computed when NVML is asked (the fake
    takes the entry at its cursor; this one never runs out)."""

    def __init__(self, produce: Callable[[], Any]) -> None:
        self._produce = produce

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: Any) -> Any:
        return self._produce()


class SimulatedH100:
    """What the simulated H100 reports: near idle until `busy` is set (the NIM serving the crew),
    then 70-98% utilization at 450-690 W; the energy counter integrates the power it reports."""

    def __init__(self, *, seed: int = 0) -> None:
        self.busy = threading.Event()
        self._rng = random.Random(seed)
        self._utilization = (0, 0)
        self._power_mw = 70_000
        self._energy_mj = 3_600_000_000  # a counter since the (simulated) driver loaded
        self._energy_at = time.monotonic()

    def utilization(self) -> tuple[int, int]:
        rng = self._rng
        self._utilization = (rng.randint(70, 98), rng.randint(30, 60)) if self.busy.is_set() else (rng.randint(0, 3), 0)
        return self._utilization

    def power_mw(self) -> int:
        busy = self.busy.is_set()
        self._power_mw = self._rng.randint(450_000, 690_000) if busy else self._rng.randint(66_000, 74_000)
        return self._power_mw

    def energy_mj(self) -> int:
        now = time.monotonic()
        self._energy_mj += round(self._power_mw * (now - self._energy_at))  # mW x s = mJ
        self._energy_at = now
        return self._energy_mj

    def fake_gpu(self) -> FakeGpu:
        busy = self.busy.is_set
        return FakeGpu(
            uuid=SIMULATED_UUID,
            name=SIMULATED_NAME,
            values={
                "utilization": _Live(self.utilization),
                "memory_used": [71 * 2**30],  # a NIM takes most of the memory for its KV cache at start
                "power_mw": _Live(self.power_mw),
                "energy_mj": _Live(self.energy_mj),
                "temperature": _Live(lambda: self._rng.randint(62, 70) if busy() else self._rng.randint(36, 40)),
                "sm_clock": _Live(lambda: 1980 if busy() else 345),
                "processes": _Live(lambda: [(4242, *self._utilization)]),
            },
        )


class _Capture:
    """The gpu-agent's exporter: keeps each export as the OTLP protobuf body the real OTLP/HTTP
    exporter would POST to /v1/metrics."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def export(self, metrics_data: Any, **kwargs: Any) -> Any:
        self.bodies.append(encode_metrics(metrics_data).SerializeToString())
        return MetricExportResult.SUCCESS

    def shutdown(self, **kwargs: Any) -> None:
        pass


@dataclass
class SimulatedSampling:
    gpu: SimulatedH100
    device: DeviceKey | None = None
    bodies: list[bytes] = field(default_factory=list)


@contextmanager
def simulated_gpu_sampling() -> Iterator[SimulatedSampling]:
    """Run the real gpu-agent on the fake NVML (one simulated H100) in a thread for the duration of
    the block; the GPU is busy while the block runs, idle for IDLE_MARGIN_S before and after. The
    exports (OTLP metrics bodies) are in `.bodies` after the block."""
    gpu = SimulatedH100()
    reader = NvmlReader(host=SIMULATED_HOST, nvml=FakeNvml([gpu.fake_gpu()]).module())
    capture = _Capture()
    agent = GpuAgent(
        url="(in process: manage.py demo)",
        headers={},
        interval=SAMPLE_INTERVAL_S,
        export_interval=3600,  # everything at the end, in requests of at most EXPORT_CHUNK readings
        host=SIMULATED_HOST,
        reader=reader,
        exporter=capture,
    )
    sampler = threading.Thread(target=agent.run, name="demo-gpu-agent", daemon=True)
    sampler.start()
    result = SimulatedSampling(gpu=gpu)
    try:
        time.sleep(IDLE_MARGIN_S)
        gpu.busy.set()
        try:
            yield result
        finally:
            gpu.busy.clear()
        time.sleep(IDLE_MARGIN_S)
    finally:
        agent.stop_event.set()
        sampler.join(timeout=30)
    info = reader.gpus[0]
    result.device = DeviceKey(
        host=SIMULATED_HOST,
        uuid=info.uuid,
        index=info.index,
        name=info.name,
        memory_total_bytes=info.memory_total_bytes,
        mig_enabled=info.mig_enabled,
    )
    result.bodies = capture.bodies


def demo_gpu_accept(*, project: Project, sampling: SimulatedSampling, base_url: str) -> list[GpuMetricsBatch]:
    """Map the mock NIM's base URL to the simulated device, queue the samples as metrics batches
    for the GPU worker, and have the worker attribute them once it has stored them."""
    assert sampling.device is not None, "simulated_gpu_sampling() has not finished"
    # The device is otherwise created by the worker from the first samples; the endpoint needs it now.
    devices_upsert(project_id=project.pk, keys=[sampling.device])
    endpoint_upsert(project=project, name=ENDPOINT_NAME, base_url=base_url, device_uuids=[sampling.device.uuid])
    batches = [
        metrics_batch_accept(project=project, body=body, content_type=otlp.PROTOBUF, user_agent=USER_AGENT)
        for body in sampling.bodies
    ]
    # The worker's periodic gpu.attribute, once more ATTRIBUTE_COUNTDOWN_S from now (if the broker is
    # down, beat's periodic run attributes the demo too).
    task_enqueue(ATTRIBUTE_TASK, countdown=ATTRIBUTE_COUNTDOWN_S)
    return [b for b in batches if b is not None]


def mock_nim_base_url(spans: Sequence[Any]) -> str | None:
    """The mock NIM's base URL, as the crew's LLM spans recorded it (server.address / server.port).
    None when the crew called anything else (with NVIDIA_API_KEY set it calls NVIDIA's API, which
    must not be mapped to a simulated GPU)."""
    for span in spans:
        attributes = span.attributes or {}
        address, port = attributes.get("server.address"), attributes.get("server.port")
        if address and port:
            return f"http://{address}:{port}/v1" if address in MOCK_NIM_HOSTS else None
    return None
