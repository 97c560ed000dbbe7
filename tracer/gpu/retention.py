"""Keeping a year of GPU samples small: per-minute rollups of old samples, then pruning.

At 1 Hz a GPU makes 86,400 samples a day. Samples older than OCTOTRACE_GPU_RAW_RETENTION_HOURS are
folded into one GpuSampleMinute per device and minute (60x fewer rows) and deleted; rollups older
than OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS are deleted. Sizes: docs/gpu-attribution.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tracer.gpu.intervals import NS, intervals_from_samples
from tracer.models import GpuDevice, GpuSample, GpuSampleMinute

MINUTE_NS = 60 * NS
DOWNSAMPLE_WINDOW_NS = 6 * 3600 * NS
_ROLLUP_VALUES = [f.name for f in GpuSampleMinute._meta.concrete_fields if f.name not in ("device", "minute_unix_nano")]


@dataclass(frozen=True, slots=True)
class DownsampleResult:
    minutes: int
    deleted: int


def _minute(time_ns: int) -> int:
    return time_ns - time_ns % MINUTE_NS


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def samples_downsample(*, now: datetime | None = None) -> DownsampleResult:
    """Roll up, per device and minute, the samples older than the raw retention, and delete them.

    The last sample before the cutoff is kept as the start of the next run's first interval (its
    minute is already rolled up, so it is not counted twice). Safe to rerun: rollups are upserts.
    """
    now = now or timezone.now()
    cutoff_ns = _minute(int((now - timedelta(hours=settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS)).timestamp() * NS))
    max_gap_ns = settings.OCTOTRACE_GPU_MAX_GAP_SECONDS * NS
    total_minutes = total_deleted = 0
    for device_id in GpuDevice.objects.values_list("pk", flat=True).iterator():
        first = (
            GpuSample.objects.filter(device_id=device_id, time_unix_nano__lt=cutoff_ns)
            .order_by("time_unix_nano")
            .values_list("time_unix_nano", flat=True)
            .first()
        )
        if first is None:
            continue
        # A window at a time (one transaction each), so a first run over weeks of samples never
        # holds them all in memory; the anchor carries the interval across windows.
        until = _minute(first)
        while until < cutoff_ns:
            until = min(until + DOWNSAMPLE_WINDOW_NS, cutoff_ns)
            minutes, deleted = _downsample_device(device_id=device_id, until_ns=until, max_gap_ns=max_gap_ns)
            total_minutes += minutes
            total_deleted += deleted
    return DownsampleResult(minutes=total_minutes, deleted=total_deleted)


@transaction.atomic
def _downsample_device(*, device_id: int, until_ns: int, max_gap_ns: int) -> tuple[int, int]:
    """Roll up one device's samples before `until_ns` (a minute boundary); returns (minutes, deleted)."""
    rows = list(
        GpuSample.objects.filter(device_id=device_id, time_unix_nano__lt=until_ns)
        .order_by("time_unix_nano")
        .values_list(
            "time_unix_nano",
            "utilization_gpu",
            "utilization_memory",
            "memory_used_bytes",
            "power_mw",
            "energy_mj",
            "temperature_c",
            "sm_clock_mhz",
        )
    )
    if not rows:
        return 0, 0
    # A first sample whose minute is already rolled up is the anchor kept by the last run.
    anchor = GpuSampleMinute.objects.filter(device_id=device_id, minute_unix_nano=_minute(rows[0][0])).exists()
    counted = rows[1:] if anchor else rows
    if not counted:
        return 0, 0
    minutes: dict[int, dict] = {}
    for t, util, util_mem, mem, power, _energy, temp, clock in counted:
        m = minutes.setdefault(
            _minute(t),
            {"n": 0, "util": [], "util_mem": [], "mem": [], "power": [], "temp": [], "clock": []},
        )
        m["n"] += 1
        for key, value in (
            ("util", util),
            ("util_mem", util_mem),
            ("mem", mem),
            ("power", power),
            ("temp", temp),
            ("clock", clock),
        ):
            if value is not None:
                m[key].append(value)
    energy: dict[int, float] = {}
    covered: dict[int, float] = {}
    for interval in intervals_from_samples(
        device_id=device_id, samples=((r[0], r[1], r[4], r[5]) for r in rows), max_gap_ns=max_gap_ns
    ):
        minute = _minute(interval.end_ns)
        covered[minute] = covered.get(minute, 0.0) + interval.seconds
        if interval.energy_j is not None:
            energy[minute] = energy.get(minute, 0.0) + interval.energy_j
    rollups = [
        GpuSampleMinute(
            device_id=device_id,
            minute_unix_nano=minute,
            sample_count=m["n"],
            covered_seconds=min(covered.get(minute, 0.0), 60.0),
            utilization_gpu_avg=_avg(m["util"]),
            utilization_gpu_max=max(m["util"], default=None),
            utilization_memory_avg=_avg(m["util_mem"]),
            memory_used_bytes_max=max(m["mem"], default=None),
            power_mw_avg=_avg(m["power"]),
            power_mw_max=max(m["power"], default=None),
            energy_j=energy.get(minute),
            temperature_c_max=max(m["temp"], default=None),
            sm_clock_mhz_avg=_avg(m["clock"]),
        )
        for minute, m in minutes.items()
    ]
    GpuSampleMinute.objects.bulk_create(
        rollups,
        update_conflicts=True,
        unique_fields=["device", "minute_unix_nano"],
        update_fields=_ROLLUP_VALUES,
    )
    # Keep the newest sample before the cutoff: the next run's first interval starts there.
    deleted, _ = GpuSample.objects.filter(device_id=device_id, time_unix_nano__lt=rows[-1][0]).delete()
    return len(rollups), deleted


def rollups_prune(*, now: datetime | None = None) -> int:
    """Delete minute rollups older than the rollup retention. Returns how many."""
    now = now or timezone.now()
    cutoff_ns = int((now - timedelta(days=settings.OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS)).timestamp() * NS)
    total = 0
    # Per device, so each delete is a range scan of the (device, minute) index.
    for device_id in GpuDevice.objects.values_list("pk", flat=True).iterator():
        deleted, _ = GpuSampleMinute.objects.filter(device_id=device_id, minute_unix_nano__lt=cutoff_ns).delete()
        total += deleted
    return total
