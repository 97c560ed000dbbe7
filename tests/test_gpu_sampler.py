"""The server's sampler on GPU hosts (tracer/gpu/sampling.py), on a fake `pynvml` module."""

from __future__ import annotations

import logging
import sys

import pytest

from octotrace_testing.fake_pynvml import NVML_ERROR_LIBRARY_NOT_FOUND, UNSUPPORTED, FakeGpu, FakeNvml
from tracer.celery import gpu_sampling_schedule
from tracer.gpu import sampling
from tracer.models import GpuDevice, GpuSample


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, settings):
    """Install a fake pynvml as the worker process's NVML, with a fresh per-process reader."""
    settings.OCTOTRACE_GPU_HOST_NAME = "gpu-host-1"
    monkeypatch.setattr(sampling, "_reader", None)
    monkeypatch.setattr(sampling, "_warned", set())

    def install(fake: FakeNvml) -> FakeNvml:
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        return fake

    return install


def eight_h100s() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                uuid=f"GPU-{i}",
                values={
                    "utilization": [(i * 10, i)],
                    "power_mw": [100_000 + i],
                    "energy_mj": [1_000 * i, 2_000 * i],
                    "memory_used": [i * 2**30],
                },
            )
            for i in range(8)
        ]
    )


@pytest.mark.django_db
def test_it_writes_every_reading_of_every_gpu_in_bulk(nvml, project_a, settings, django_assert_max_num_queries) -> None:
    settings.OCTOTRACE_GPU_PROJECT = project_a.slug
    nvml(eight_h100s())
    # Queries do not grow with the number of samples: 8 GPUs x 3 readings in a handful.
    with django_assert_max_num_queries(8):
        written = sampling.gpu_sample(host="gpu-host-1", readings=3, interval_s=0)
    assert written == 24
    assert GpuDevice.objects.filter(project=project_a, host="gpu-host-1").count() == 8
    gpu5 = list(GpuSample.objects.filter(device__uuid="GPU-5").order_by("time_unix_nano"))
    assert [s.energy_mj for s in gpu5] == [5_000, 10_000, 10_000]
    assert gpu5[0].utilization_gpu == 50 and gpu5[0].memory_used_bytes == 5 * 2**30
    # Unsupported on this fake: temperature and clock are NULL, not zero.
    assert gpu5[0].temperature_c is None and gpu5[0].sm_clock_mhz is None


@pytest.mark.django_db
def test_without_nvml_the_first_run_says_so_and_later_runs_do_nothing(nvml, project_a, settings, caplog) -> None:
    settings.OCTOTRACE_GPU_PROJECT = project_a.slug
    fake = nvml(FakeNvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    with caplog.at_level(logging.WARNING):
        results = [sampling.gpu_sample(host="gpu-host-1", readings=2, interval_s=0) for _ in range(5)]
    assert results == [0] * 5
    assert fake.calls["nvmlInit"] == 1
    assert len([r for r in caplog.records if "no GPU telemetry" in r.getMessage()]) == 1
    assert not GpuSample.objects.exists()


@pytest.mark.django_db
def test_an_unsupported_field_leaves_the_rest_of_the_sample(nvml, project_a, settings) -> None:
    settings.OCTOTRACE_GPU_PROJECT = project_a.slug
    nvml(FakeNvml([FakeGpu(uuid="GPU-old", values={"utilization": [(30, 3)], "energy_mj": [UNSUPPORTED]})]))
    sampling.gpu_sample(host="gpu-host-1", readings=2, interval_s=0)
    samples = list(GpuSample.objects.all())
    assert [(s.utilization_gpu, s.energy_mj) for s in samples] == [(30, None), (30, None)]


@pytest.mark.django_db
def test_a_run_meant_for_another_host_or_without_a_project_touches_nothing(nvml, project_a, settings) -> None:
    fake = nvml(eight_h100s())
    settings.OCTOTRACE_GPU_PROJECT = project_a.slug
    assert sampling.gpu_sample(host="gpu-host-2", readings=1, interval_s=0) == 0
    settings.OCTOTRACE_GPU_PROJECT = "no-such-project"
    assert sampling.gpu_sample(host="gpu-host-1", readings=1, interval_s=0) == 0
    assert fake.calls["nvmlInit"] == 0
    assert not GpuSample.objects.exists()


def test_beat_samples_each_gpu_host_on_its_own_queue(settings) -> None:
    settings.OCTOTRACE_GPU_HOSTS = ["nim-a", "nim-b"]
    settings.OCTOTRACE_GPU_SAMPLE_SECONDS = 10
    schedule = gpu_sampling_schedule()
    assert schedule["gpu-sample-nim-a"]["options"] == {"queue": "gpu.nim-a", "expires": 10.0}
    assert schedule["gpu-sample-nim-b"]["args"] == ["nim-b"]
    assert schedule["gpu-sample-nim-b"]["task"] == "gpu.sample"
    settings.OCTOTRACE_GPU_HOSTS = []
    assert gpu_sampling_schedule() == {}


def test_gpu_tasks_go_to_the_gpu_queue_by_name() -> None:
    import tracer.tasks  # noqa: F401 - registers the tasks
    from tracer.celery import app

    for name in (
        "gpu.attribute",
        "gpu.attribute_project",
        "gpu.process_metrics",
        "gpu.downsample",
        "gpu.prune",
        "gpu.requeue_stuck_metrics",
    ):
        assert app.amqp.router.route({}, name, (), {}, None)["queue"].name == "gpu"
    # Beat's own option wins over the route: sampling goes to the host's queue.
    assert app.amqp.router.route({"queue": "gpu.nim-a"}, "gpu.sample", (), {}, None)["queue"].name == "gpu.nim-a"
