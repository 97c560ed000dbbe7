"""End to end: the SDK's `octotrace gpu-agent`, reading a fake `pynvml` (there is no GPU here),
exports through the real OTLP/HTTP metrics exporter to a live server's `POST /v1/metrics`; a real
Celery worker process turns the stored batch into GPU samples in the database."""

from __future__ import annotations

import sys
import time

import pytest

from octotrace import cli
from octotrace.testing.fake_pynvml import UNSUPPORTED, FakeGpu, FakeNvml
from tracer.models import GpuDevice, GpuMetricsBatch, GpuSample

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for_batches(project, *, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = GpuMetricsBatch.objects.filter(project=project, status=GpuMetricsBatch.Status.DONE).count()
        if done >= count:
            return
        time.sleep(0.25)
    states = list(GpuMetricsBatch.objects.filter(project=project).values_list("pk", "status", "error"))
    pytest.fail(f"metrics batches not processed within {timeout}s: {states}")


def test_the_gpu_agent_exports_to_the_live_server_and_the_worker_stores_samples(
    live_server, worker, project_a, key_a, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeNvml(
        [
            FakeGpu(
                uuid="GPU-e2e-0",
                name="NVIDIA H100 80GB HBM3",
                values={
                    "utilization": [(10, 5), (95, 60), (97, 61), (40, 20)],
                    "memory_used": [70 * 2**30],
                    "power_mw": [120_000, 650_000, 680_000, 300_000],
                    "energy_mj": [5_000_000, 5_650_000, 6_330_000, 6_630_000],
                    "temperature": [55, 70],
                    "sm_clock": [1980],
                },
            ),
            FakeGpu(
                uuid="GPU-e2e-1",
                name="NVIDIA H100 80GB HBM3",
                values={"power_mw": [90_000], "energy_mj": [UNSUPPORTED]},
            ),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    args = ["gpu-agent", "--endpoint", live_server.url, "--api-key", key_a[1], "--host", "nim-e2e"]
    # Four readings 50 ms apart, exported in two requests.
    assert cli.main([*args, "--interval", "0.05", "--export-interval", "0.1", "--count", "4"]) == 0

    batches = GpuMetricsBatch.objects.filter(project=project_a).count()
    assert batches >= 2
    wait_for_batches(project_a, count=batches)

    devices = {d.uuid: d for d in GpuDevice.objects.filter(project=project_a)}
    assert set(devices) == {"GPU-e2e-0", "GPU-e2e-1"}
    assert (devices["GPU-e2e-0"].host, devices["GPU-e2e-1"].index) == ("nim-e2e", 1)
    busy = list(GpuSample.objects.filter(device=devices["GPU-e2e-0"]).order_by("time_unix_nano"))
    assert [s.utilization_gpu for s in busy] == [10, 95, 97, 40]
    assert [s.power_mw for s in busy] == [120_000, 650_000, 680_000, 300_000]
    assert [s.energy_mj for s in busy] == [5_000_000, 5_650_000, 6_330_000, 6_630_000]
    assert busy[0].memory_used_bytes == 70 * 2**30 and busy[1].temperature_c == 70
    idle = list(GpuSample.objects.filter(device=devices["GPU-e2e-1"]))
    # The second GPU reports power only: the rest stays NULL (not available), never zero.
    assert len(idle) == 4 and all(s.energy_mj is None and s.utilization_gpu is None for s in idle)
