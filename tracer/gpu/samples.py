"""The shape every way in produces (Celery sampler, OTLP metrics), and the bulk writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from octotrace.nvml import FIELDS
from tracer.models import GpuDevice, GpuSample

# The fields of an NVML reading, as the sampler reads them.
SAMPLE_FIELDS = FIELDS


@dataclass(frozen=True, slots=True)
class DeviceKey:
    host: str
    uuid: str
    index: int = 0
    name: str = ""
    memory_total_bytes: int | None = None
    mig_enabled: bool = False


@dataclass(slots=True)
class SampleRecord:
    device: DeviceKey
    time_unix_nano: int
    values: dict[str, Any] = field(default_factory=dict)


def record_from_reading(reading: Any, *, host: str) -> SampleRecord:
    """An octotrace.nvml.GpuReading as a SampleRecord."""
    gpu = reading.gpu
    key = DeviceKey(
        host=host,
        uuid=gpu.uuid,
        index=gpu.index,
        name=gpu.name,
        memory_total_bytes=gpu.memory_total_bytes,
        mig_enabled=gpu.mig_enabled,
    )
    values = {name: getattr(reading, name) for name in SAMPLE_FIELDS if getattr(reading, name) is not None}
    return SampleRecord(device=key, time_unix_nano=reading.time_unix_nano, values=values)


def devices_upsert(*, project_id: int, keys: list[DeviceKey]) -> dict[str, int]:
    """Create or refresh the devices; returns device id by UUID. One query for the lookup, one
    insert for new devices, one update per device only when its description changed."""
    latest: dict[str, DeviceKey] = {}
    for key in keys:
        latest[key.uuid] = key
    if not latest:
        return {}
    now = timezone.now()
    existing = {d.uuid: d for d in GpuDevice.objects.filter(project_id=project_id, uuid__in=list(latest))}
    new = [
        GpuDevice(
            project_id=project_id,
            host=k.host,
            uuid=k.uuid,
            index=k.index,
            name=k.name,
            memory_total_bytes=k.memory_total_bytes,
            mig_enabled=k.mig_enabled,
            first_seen_at=now,
            last_seen_at=now,
        )
        for uuid, k in latest.items()
        if uuid not in existing
    ]
    if new:
        # ignore_conflicts: two writers discovering one GPU at once both succeed.
        GpuDevice.objects.bulk_create(new, ignore_conflicts=True)
    for uuid, device in existing.items():
        k = latest[uuid]
        described = (k.host, k.index, k.name or device.name, k.memory_total_bytes or device.memory_total_bytes)
        if described != (device.host, device.index, device.name, device.memory_total_bytes):
            device.host, device.index, device.name, device.memory_total_bytes = described
            device.mig_enabled = k.mig_enabled
            device.last_seen_at = now
            device.save(update_fields=["host", "index", "name", "memory_total_bytes", "mig_enabled", "last_seen_at"])
    GpuDevice.objects.filter(project_id=project_id, uuid__in=list(existing)).update(last_seen_at=now)
    if new:
        existing = {d.uuid: d for d in GpuDevice.objects.filter(project_id=project_id, uuid__in=list(latest))}
    return {uuid: device.pk for uuid, device in existing.items()}


def samples_write(*, project_id: int, records: list[SampleRecord]) -> int:
    """Bulk-insert samples (their devices upserted first). A sample already stored for the same
    device and time is kept as it was (replays are idempotent). Returns how many were given."""
    if not records:
        return 0
    with transaction.atomic():
        device_ids = devices_upsert(project_id=project_id, keys=[r.device for r in records])
        GpuSample.objects.bulk_create(
            [
                GpuSample(device_id=device_ids[r.device.uuid], time_unix_nano=r.time_unix_nano, **r.values)
                for r in records
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )
    return len(records)
