"""OTLP metrics into GPU samples: `POST /v1/metrics` from `octotrace gpu-agent`, or any OpenTelemetry
collector that uses the hardware GPU names (OpenTelemetry `hw.gpu.*` semantic conventions, and the
`hw.gpu.power.draw` / `hw.gpu.energy.consumed` names of OpenLIT's GPU collector).

The receiver stores the body as a GpuMetricsBatch and answers; the GPU worker decodes it here. A
lost broker message or a dead worker loses nothing: the sweeper re-enqueues stuck batches (the
stored-batch service, tracer/batches.py, as for traces), and samples are keyed on (device, time),
so processing a batch twice writes each sample once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Unpack

from django.db import transaction
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from tracer import batches, otlp
from tracer.gpu.samples import DeviceKey, SampleRecord, samples_write
from tracer.models import GpuMetricsBatch, Project

PROCESS_TASK = "gpu.process_metrics"
# Points of one device whose times are this close are one sample (collectors stamp each
# instrument separately, a few microseconds apart).
SAME_SAMPLE_NS = 250_000_000


def _percent(value: float, unit: str) -> int:
    return round(value if unit == "%" else value * 100)


def _by_unit(factors: dict[str, float], default: float) -> Callable[[float, str], int]:
    return lambda value, unit: round(value * factors.get(unit, default))


# metric name -> (sample field, conversion from (value, unit)). Energy and power also arrive as the
# generic hardware metrics `hw.energy` / `hw.power` with hw.type = "gpu".
_FIELDS: dict[str, tuple[str, Callable[[float, str], Any]]] = {
    "hw.gpu.utilization": ("utilization_gpu", _percent),
    "hw.gpu.memory.controller.utilization": ("utilization_memory", _percent),
    "hw.gpu.memory.usage": ("memory_used_bytes", _by_unit({"By": 1, "MiB": 2**20, "MB": 10**6}, 1)),
    "hw.gpu.power.draw": ("power_mw", _by_unit({"W": 1000, "mW": 1}, 1000)),
    "hw.power": ("power_mw", _by_unit({"W": 1000, "mW": 1}, 1000)),
    "hw.gpu.energy.consumed": ("energy_mj", _by_unit({"J": 1000, "mJ": 1}, 1000)),
    "hw.energy": ("energy_mj", _by_unit({"J": 1000, "mJ": 1}, 1000)),
    "hw.gpu.temperature": ("temperature_c", lambda value, unit: round(value)),
    "hw.gpu.clock.sm": ("sm_clock_mhz", lambda value, unit: round(value)),
    "hw.gpu.clock.graphics": ("sm_clock_mhz", lambda value, unit: round(value)),
}
# Describes the device rather than a sample.
_MEMORY_LIMIT = "hw.gpu.memory.limit"
METRIC_NAMES = frozenset({*_FIELDS, _MEMORY_LIMIT})
_GENERIC = frozenset({"hw.power", "hw.energy"})


def _first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = attrs.get(name)
        if value not in (None, ""):
            return value
    return None


def _device(point: otlp.MetricPoint) -> DeviceKey | None:
    attrs = {**point.resource_attributes, **point.attributes}
    uuid = _first(attrs, "hw.id", "gpu.uuid", "UUID")
    if uuid is None:
        return None
    index = _first(attrs, "hw.gpu.index", "gpu.index", "gpu")
    try:
        index = int(index) if index is not None else 0
    except (TypeError, ValueError):
        index = 0
    return DeviceKey(
        host=str(_first(attrs, "host.name", "Hostname") or "")[:255],
        uuid=str(uuid)[:100],
        index=max(0, min(index, 32767)),
        name=str(_first(attrs, "hw.name", "hw.model", "modelName") or "")[:200],
    )


def _relevant(point: otlp.MetricPoint) -> bool:
    if point.name in _GENERIC and point.attributes.get("hw.type") != "gpu":
        return False
    if point.name == "hw.gpu.utilization" and point.attributes.get("hw.gpu.task", "general") != "general":
        return False  # encoder / decoder utilization: not what serves a model
    return True


@dataclass(frozen=True, slots=True)
class Decoded:
    samples: list[SampleRecord]
    points: int
    skipped: int


def samples_from_request(request: Any) -> Decoded:
    """Group a metrics request's GPU points into one sample per device and instant."""
    per_device: dict[str, list[tuple[int, str, Any]]] = {}
    keys: dict[str, DeviceKey] = {}
    memory_total: dict[str, int] = {}
    points = skipped = 0
    for point in otlp.iter_metric_points(request, names=METRIC_NAMES):
        if not _relevant(point):
            continue
        points += 1
        key = _device(point)
        if key is None or point.time_unix_nano <= 0:
            skipped += 1
            continue
        keys[key.uuid] = key
        if point.name == _MEMORY_LIMIT:
            memory_total[key.uuid] = round(point.value)
            continue
        field, convert = _FIELDS[point.name]
        try:
            value = convert(float(point.value), point.unit)
        except (OverflowError, ValueError):  # NaN or infinity
            skipped += 1
            continue
        if value < 0 and field != "temperature_c":
            skipped += 1
            continue
        per_device.setdefault(key.uuid, []).append((point.time_unix_nano, field, value))

    samples: list[SampleRecord] = []
    for uuid, items in per_device.items():
        key = keys[uuid]
        if uuid in memory_total:
            key = DeviceKey(key.host, key.uuid, key.index, key.name, memory_total[uuid], key.mig_enabled)
        items.sort(key=lambda item: item[0])
        current: SampleRecord | None = None
        for time_ns, field, value in items:
            if current is None or time_ns - current.time_unix_nano > SAME_SAMPLE_NS or field in current.values:
                current = SampleRecord(device=key, time_unix_nano=time_ns, values={})
                samples.append(current)
            current.values[field] = value
    return Decoded(samples=samples, points=points, skipped=skipped)


# --- The durable batch ------------------------------------------------------------------------


def _point_count(request: ExportMetricsServiceRequest, body: bytes) -> dict[str, int] | None:
    points = sum(1 for point in otlp.iter_metric_points(request, names=METRIC_NAMES) if _relevant(point))
    return {"point_count": points} if points else None


# The samples are the data once a batch is processed: a body kept for days would outweigh them
# (about 10 KB of gzip per agent export, every 10 s), and reprocessing it could only rewrite the
# same rows. So the body goes when processed, the row after OCTOTRACE_RAW_RETENTION_HOURS.
BATCHES = batches.BatchKind(
    model=GpuMetricsBatch, task=PROCESS_TASK, parse=otlp.parse_metrics_request, counts=_point_count, keep_rows=False
)


def metrics_batch_accept(
    *, project: Project, body: bytes, content_type: str, **received: Unpack[batches.Received]
) -> GpuMetricsBatch | None:
    """Validate an OTLP metrics body and store it; the GPU worker is told once it is committed.

    Raises otlp.BadBody / otlp.BodyTooLarge. Returns None for a valid request with no GPU metric.
    """
    return batches.batch_accept(kind=BATCHES, project=project, body=body, content_type=content_type, **received)


def metrics_batch_process(*, batch_id: int) -> int | None:
    """Turn a stored metrics batch into samples. Returns the number of samples, None if there was
    nothing to do. Safe to run twice or concurrently (samples are upserted on device and time)."""
    claimed = batches.batch_claim(kind=BATCHES, batch_id=batch_id)
    if claimed is None:
        return None
    decoded = samples_from_request(claimed.request)
    note = f"{decoded.skipped} point(s) without a device id or a usable value" if decoded.skipped else ""
    with transaction.atomic():
        samples_write(project_id=claimed.batch.project_id, records=decoded.samples)
        batches.batch_done(kind=BATCHES, batch_id=batch_id, error=note, sample_count=len(decoded.samples))
    return len(decoded.samples)
