"""Per-minute rollups of old GPU samples, and pruning (tracer/gpu/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracer.gpu.attribution import device_intervals
from tracer.gpu.intervals import split_intervals
from tracer.gpu.retention import rollups_prune, samples_downsample
from tracer.models import GpuDevice, GpuSample, GpuSampleMinute

S = 1_000_000_000
M0 = 1_780_000_020 * S  # a whole minute
MINUTE = 60 * S


def at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / S, tz=UTC)


@pytest.fixture
def device(project_a) -> GpuDevice:
    return GpuDevice.objects.create(project=project_a, host="h", uuid="GPU-r", name="NVIDIA H100")


def sample_seconds(device: GpuDevice, start_s: int, end_s: int) -> None:
    """1 Hz samples at M0 + [start_s, end_s); 400 W steady, counter +400 J a second,
    utilization = the second within its minute (0..59), so averages are easy to check."""
    GpuSample.objects.bulk_create(
        GpuSample(
            device=device,
            time_unix_nano=M0 + t * S,
            utilization_gpu=t % 60,
            power_mw=400_000,
            energy_mj=t * 400_000,
            memory_used_bytes=t,
            temperature_c=50 + t % 3,
        )
        for t in range(start_s, end_s)
    )


@pytest.mark.django_db
def test_old_samples_become_minute_rollups_and_are_deleted(device, settings) -> None:
    settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS = 1
    sample_seconds(device, 0, 180)  # three old minutes
    now = at(M0 + 3 * MINUTE) + timedelta(hours=1)
    sample_seconds(device, 3 * 3600, 3 * 3600 + 10)  # recent: stays raw

    result = samples_downsample(now=now)

    rollups = list(GpuSampleMinute.objects.filter(device=device).order_by("minute_unix_nano"))
    assert [r.minute_unix_nano for r in rollups] == [M0, M0 + MINUTE, M0 + 2 * MINUTE]
    assert [r.sample_count for r in rollups] == [60, 60, 60]
    # The first minute has 59 intervals (its first sample starts the first one), the others 60.
    assert [r.covered_seconds for r in rollups] == [59.0, 60.0, 60.0]
    assert [r.energy_j for r in rollups] == [59 * 400.0, 60 * 400.0, 60 * 400.0]
    assert rollups[0].utilization_gpu_avg == pytest.approx(29.5) and rollups[0].utilization_gpu_max == 59
    assert rollups[2].memory_used_bytes_max == 179 and rollups[1].temperature_c_max == 52
    assert rollups[0].power_mw_avg == 400_000
    # Old samples are gone but the newest old one, kept to start the next run's first interval.
    assert result.minutes == 3 and result.deleted == 179
    remaining = list(
        GpuSample.objects.filter(device=device).order_by("time_unix_nano").values_list("time_unix_nano", flat=True)
    )
    assert remaining[0] == M0 + 179 * S and len(remaining) == 11


@pytest.mark.django_db
def test_a_second_run_neither_loses_nor_double_counts_the_interval_across_runs(device, settings) -> None:
    settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS = 1
    sample_seconds(device, 0, 120)
    samples_downsample(now=at(M0 + 2 * MINUTE) + timedelta(hours=1))
    sample_seconds(device, 120, 240)
    samples_downsample(now=at(M0 + 4 * MINUTE) + timedelta(hours=1))
    rollups = list(GpuSampleMinute.objects.filter(device=device).order_by("minute_unix_nano"))
    assert [r.sample_count for r in rollups] == [60, 60, 60, 60]
    # Every interval between the 240 samples counted once: 239 s and 239 x 400 J.
    assert sum(r.covered_seconds for r in rollups) == 239.0
    assert sum(r.energy_j for r in rollups) == 239 * 400.0
    # Rerunning with nothing new changes nothing.
    samples_downsample(now=at(M0 + 4 * MINUTE) + timedelta(hours=1))
    assert GpuSampleMinute.objects.filter(device=device).count() == 4
    assert sum(GpuSampleMinute.objects.values_list("energy_j", flat=True)) == 239 * 400.0


@pytest.mark.django_db
def test_attribution_reads_rollups_where_the_raw_samples_are_gone(device, settings) -> None:
    settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS = 1
    sample_seconds(device, 0, 180)
    samples_downsample(now=at(M0 + 3 * MINUTE) + timedelta(hours=1))
    intervals = device_intervals(device_ids=[device.pk], start_ns=M0 + MINUTE, end_ns=M0 + 2 * MINUTE)
    shares = split_intervals(requests=[("span", M0 + MINUTE, M0 + 2 * MINUTE)], intervals=intervals)
    assert shares["span"].seconds == pytest.approx(60.0)
    assert shares["span"].energy_j == pytest.approx(60 * 400.0)


@pytest.mark.django_db
def test_rollups_past_their_retention_are_pruned(device, settings) -> None:
    settings.OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS = 30
    GpuSampleMinute.objects.bulk_create(
        GpuSampleMinute(device=device, minute_unix_nano=M0 + day * 86400 * S, sample_count=60) for day in range(40)
    )
    now = at(M0) + timedelta(days=40)
    assert rollups_prune(now=now) == 10
    oldest = GpuSampleMinute.objects.order_by("minute_unix_nano").first()
    assert oldest.minute_unix_nano == M0 + 10 * 86400 * S


@pytest.mark.django_db
def test_a_backlog_is_rolled_up_a_window_at_a_time_with_the_same_result(device, settings, monkeypatch) -> None:
    from tracer.gpu import retention

    settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS = 1
    monkeypatch.setattr(retention, "DOWNSAMPLE_WINDOW_NS", MINUTE)  # one minute per transaction
    sample_seconds(device, 0, 240)
    result = samples_downsample(now=at(M0 + 4 * MINUTE) + timedelta(hours=1))
    rollups = list(GpuSampleMinute.objects.filter(device=device).order_by("minute_unix_nano"))
    assert [r.sample_count for r in rollups] == [60, 60, 60, 60]
    assert sum(r.covered_seconds for r in rollups) == 239.0
    assert sum(r.energy_j for r in rollups) == 239 * 400.0
    assert (result.minutes, result.deleted) == (4, 239)
