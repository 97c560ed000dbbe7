"""End to end: the SDK's `octotrace gpu-agent`, reading a fake `pynvml` (there is no GPU here),
exports through the real OTLP/HTTP metrics exporter to a live server's `POST /v1/metrics`; a real
Celery worker process turns the stored batch into GPU samples in the database."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from openai import OpenAI

import octotrace
from octotrace import cli, gpu_agent
from octotrace_testing.fake_pynvml import UNSUPPORTED, FakeGpu, FakeNvml
from octotrace_testing.nim_mock import NimMock
from tests.factories import wait_until_processed
from tracer.celery import task_send
from tracer.gpu.prices import endpoint_upsert
from tracer.models import GpuDevice, GpuMetricsBatch, GpuSample, Span, Trace

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


def wait_for_readings(fake: FakeNvml, count: int, *, timeout: float = 30.0) -> None:
    """Until the gpu-agent has taken `count` more readings (power is read once per reading)."""
    target = fake.calls["nvmlDeviceGetPowerUsage"] + count
    deadline = time.monotonic() + timeout
    while fake.calls["nvmlDeviceGetPowerUsage"] < target:
        if time.monotonic() > deadline:
            pytest.fail(f"the gpu-agent took no {count} readings within {timeout}s")
        time.sleep(0.01)


def test_two_concurrent_calls_to_a_self_hosted_endpoint_split_its_gpu(
    live_server, worker, project_a, key_a, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path: the gpu-agent samples a (fake) H100 while an agent's instrumented OpenAI
    client makes two concurrent streaming calls to a local NIM (the mock); spans and samples go
    through the live server and the worker; the endpoint is mapped; the worker's gpu.attribute
    task gives each call its share."""
    # Steady 500 W, no energy counter: each call's energy must be 500 W x its GPU-seconds.
    gpu = FakeGpu(uuid="GPU-crew", values={"utilization": [(90, 40)], "power_mw": [500_000], "memory_used": [2**34]})
    fake = FakeNvml([gpu])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    agent = gpu_agent.GpuAgent(
        url=f"{live_server.url}/v1/metrics",
        headers={"authorization": f"Bearer {key_a[1]}"},
        interval=0.05,
        export_interval=0.5,
        host="nim-box",
    )
    sampler = threading.Thread(target=agent.run, daemon=True)
    sampler.start()
    # The mock answers neither call before both have reached it: each client span starts before its
    # request is sent and ends after its reply, so the two spans overlap, whatever the scheduling.
    both_in_flight = threading.Barrier(2, timeout=30)
    errors: list[Exception] = []

    octotrace.init(endpoint=live_server.url, api_key=key_a[1], service_name="gpu-e2e")
    try:
        with NimMock(chunk_delay=0.01, before_reply=both_in_flight.wait) as mock:
            client = OpenAI(base_url=mock.base_url, api_key="nvapi-mock", max_retries=0)

            def call(n: int) -> None:
                try:
                    stream = client.chat.completions.create(
                        model="nvidia/nemotron-3-nano-30b-a3b",
                        messages=[{"role": "user", "content": f"question {n}: budget for inference"}],
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                    for _ in stream:
                        pass
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    errors.append(exc)

            wait_for_readings(fake, 3)  # a few idle readings first
            calls = [threading.Thread(target=call, args=(n,)) for n in range(2)]
            for t in calls:
                t.start()
            for t in calls:
                t.join(timeout=60)
            wait_for_readings(fake, 3)  # and after
            address = mock.base_url
    finally:
        octotrace.shutdown()
        agent.stop_event.set()
        sampler.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in calls), errors
    assert len(mock.requests) == 2

    wait_until_processed(project_a)
    wait_for_batches(project_a, count=GpuMetricsBatch.objects.filter(project=project_a).count())
    endpoint_upsert(project=project_a, name="local NIM", base_url=address, device_uuids=["GPU-crew"])

    assert task_send("gpu.attribute")
    chats = Span.objects.filter(project=project_a, kind="llm")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and chats.filter(gpu_seconds__isnull=True).exists():
        time.sleep(0.25)
    a, b = chats.order_by("start_time_unix_nano")
    assert a.gpu_seconds is not None and b.gpu_seconds is not None, "gpu.attribute did not run"
    for span in (a, b):
        duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
        # They overlapped, so each had the GPU for less than its own duration ...
        assert 0 < span.gpu_seconds < duration
        # ... and its energy is the 500 W it shared over exactly those seconds.
        assert span.gpu_energy_wh * 3600 == pytest.approx(500 * span.gpu_seconds, rel=1e-6)
        assert span.gpu_cost is not None and span.gpu_cost > 0
    overlap = (
        min(a.end_time_unix_nano, b.end_time_unix_nano) - max(a.start_time_unix_nano, b.start_time_unix_nano)
    ) / 1e9
    union = (
        max(a.end_time_unix_nano, b.end_time_unix_nano) - min(a.start_time_unix_nano, b.start_time_unix_nano)
    ) / 1e9
    # Together they got the GPU time of their union (within the sample grid), not the sum of durations.
    assert overlap > 0
    assert a.gpu_seconds + b.gpu_seconds == pytest.approx(union, abs=0.01)
    totals = Trace.objects.filter(project=project_a, gpu_seconds__isnull=False)
    assert sum(t.gpu_seconds for t in totals) == pytest.approx(a.gpu_seconds + b.gpu_seconds)
