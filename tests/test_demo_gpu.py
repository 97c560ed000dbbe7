"""End to end: `manage.py demo` fills the demo project with SIMULATED GPU telemetry for the mock NIM
(the SDK's gpu-agent reading one H100 behind the fake NVML module while the example crew runs), and
a real Celery worker process stores the samples and, through the gpu.attribute task the demo
enqueues (no beat runs here), gives the crew's LLM calls their GPU-seconds, Wh and dollars."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from demo.gpu import SIMULATED_NAME, mock_nim_base_url
from tests.factories import wait_until_processed
from tracer.models import Endpoint, GpuDevice, GpuMetricsBatch, GpuSample, Project, Span

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(condition, *, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"{what} within {timeout}s")


def test_the_demo_shows_simulated_gpu_samples_and_the_worker_attributes_them_to_the_crew(live_server, worker) -> None:
    out = StringIO()
    call_command("demo", stdout=out)
    output = out.getvalue()
    assert "Demo GPU data is SIMULATED" in output and "fake NVML" in output

    project = Project.objects.get(slug="demo")
    wait_until_processed(project)
    batches = GpuMetricsBatch.objects.filter(project=project)
    assert batches.exists()
    wait_for(
        lambda: not batches.exclude(status=GpuMetricsBatch.Status.DONE).exists(),
        what=f"metrics batches not processed: {list(batches.values_list('pk', 'status', 'error'))}",
    )

    # One device, and it says it is simulated.
    (device,) = GpuDevice.objects.filter(project=project)
    assert (device.uuid, device.name, device.host) == (
        "GPU-simulated-demo-h100-0",
        "NVIDIA H100 80GB HBM3 (simulated)",
        "simulated-nim",
    )
    (endpoint,) = Endpoint.objects.filter(project=project)
    assert list(endpoint.devices.all()) == [device]
    chats = Span.objects.filter(project=project, kind="llm")
    # Mapped to the mock NIM's address, as the crew's LLM spans recorded it.
    assert {(s.attributes["server.address"], s.attributes["server.port"]) for s in chats} == {
        (endpoint.server_address, endpoint.server_port)
    }

    # Samples from the gpu-agent: idle before and after the crew, busy while it ran.
    samples = list(GpuSample.objects.filter(device=device).order_by("time_unix_nano"))
    assert len(samples) >= 10
    assert all(s.utilization_gpu is not None and s.power_mw and s.energy_mj for s in samples)
    assert samples[0].utilization_gpu <= 3 and samples[-1].utilization_gpu <= 3
    assert max(s.utilization_gpu for s in samples) >= 70
    assert [s.energy_mj for s in samples] == sorted(s.energy_mj for s in samples)
    first_call = min(chats.values_list("start_time_unix_nano", flat=True))
    last_call = max(chats.values_list("end_time_unix_nano", flat=True))
    assert samples[0].time_unix_nano < first_call and samples[-1].time_unix_nano > last_call

    # The demo's own gpu.attribute (sent with a countdown) runs on the worker.
    wait_for(lambda: not chats.filter(gpu_seconds__isnull=True).exists(), what="gpu.attribute did not run")
    attributed = chats.filter(gpu_seconds__gt=0)
    assert attributed.exists()
    for span in attributed:
        assert span.gpu_energy_wh > 0 and span.gpu_cost > 0
    sampled_s = (samples[-1].time_unix_nano - samples[0].time_unix_nano) / 1e9
    assert sum(chats.values_list("gpu_seconds", flat=True)) <= sampled_s

    # The GPUs page and a trace page's GPU panel show it, labelled as simulated.
    client = Client()
    client.force_login(User.objects.get(username="demo"))
    page = client.get("/p/demo/gpus/")
    assert page.status_code == 200 and SIMULATED_NAME in page.content.decode()
    trace_id = attributed.first().trace_id
    panel = client.get(f"/p/demo/traces/{trace_id}/")
    # The panel is only there when a step of the trace has GPU figures.
    assert panel.status_code == 200 and "data-trace-gpu" in panel.content.decode()


@pytest.mark.django_db(transaction=False)
def test_only_the_mock_nims_address_is_mapped_to_the_simulated_gpu() -> None:
    class FinishedSpan:
        def __init__(self, **attributes) -> None:
            self.attributes = attributes

    tool = FinishedSpan(**{"gen_ai.tool.name": "search_docs"})
    mock = FinishedSpan(**{"server.address": "127.0.0.1", "server.port": 41234})
    nvidia = FinishedSpan(**{"server.address": "integrate.api.nvidia.com", "server.port": 443})
    assert mock_nim_base_url([tool, mock]) == "http://127.0.0.1:41234/v1"
    # With NVIDIA_API_KEY set the crew calls NVIDIA's API: no simulated GPU for that.
    assert mock_nim_base_url([tool, nvidia]) is None
