"""Retention: each project keeps its data for a number of days (its override, else
OCTOTRACE_RETENTION_DAYS), and older data is deleted by beat in bounded steps.

What goes, per project, past its horizon:
- whole traces that ended before the horizon, with all their spans (a trace that straddles the
  horizon is kept whole, so no page shows half a trace);
- stored ingest batches received before the horizon that are done or failed (their raw bodies went
  earlier, after OCTOTRACE_RAW_RETENTION_HOURS);
- GPU samples and their minute rollups of the project's devices, older than the horizon.

Each step deletes at most `chunk` rows in its own transaction, traces under the same per-trace locks
as ingest (tracer/rollup.py), so a late batch for a trace being deleted waits and then writes a new,
complete-from-then-on trace rather than interleaving with the delete. Nothing inside the horizon,
and nothing of another project, is touched (tests/test_retention.py).

Not yet: span partitions dropped whole (PostgreSQL partitioning is a later step of the scale issue;
until then old spans are deleted in chunks), and hourly rollup tables (they do not exist yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from tracer.celery import task_send
from tracer.models import GpuDevice, GpuSample, GpuSampleMinute, IngestBatch, Project, Span, Trace
from tracer.rollup import traces_lock

NS = 1_000_000_000
SWEEP_TASK = "retention.sweep"
PROJECT_TASK = "retention.project"


def retention_horizon(*, project: Project, now: datetime | None = None) -> datetime:
    """Data that ended before this instant is past the project's retention."""
    return (now or timezone.now()) - timedelta(days=project.retention_days_effective)


@dataclass(slots=True)
class RetentionResult:
    traces: int = 0
    spans: int = 0
    batches: int = 0
    gpu_samples: int = 0
    gpu_minutes: int = 0
    done: bool = True  # False when the time budget ran out first: the next run goes on
    steps: int = field(default=0, repr=False)

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "traces": self.traces,
            "spans": self.spans,
            "batches": self.batches,
            "gpu_samples": self.gpu_samples,
            "gpu_minutes": self.gpu_minutes,
            "done": self.done,
        }


def retention_apply(
    *,
    project_id: int,
    now: datetime | None = None,
    chunk: int = 1000,
    budget_s: float | None = None,
    on_step: Callable[[RetentionResult], None] | None = None,
) -> RetentionResult:
    """Delete one project's data past its horizon, `chunk` rows per transaction, until none is left
    or `budget_s` seconds have passed (then `done` is False). `on_step` sees the running totals."""
    project = Project.objects.get(pk=project_id)
    horizon = retention_horizon(project=project, now=now)
    horizon_ns = int(horizon.timestamp() * NS)
    result = RetentionResult()
    started = time.monotonic()
    device_ids = list(GpuDevice.objects.filter(project_id=project_id).values_list("pk", flat=True))
    steps: list[Callable[[], int]] = [
        lambda: _traces_step(project_id=project_id, horizon_ns=horizon_ns, chunk=chunk, result=result),
        lambda: _batches_step(project_id=project_id, horizon=horizon, chunk=chunk, result=result),
        lambda: _gpu_samples_step(device_ids=device_ids, horizon_ns=horizon_ns, chunk=chunk, result=result),
        lambda: _gpu_minutes_step(device_ids=device_ids, horizon_ns=horizon_ns, chunk=chunk, result=result),
    ]
    for step in steps:
        while True:
            if budget_s is not None and time.monotonic() - started > budget_s:
                result.done = False
                return result
            if step() == 0:
                break
            result.steps += 1
            if on_step is not None:
                on_step(result)
    return result


@transaction.atomic
def _traces_step(*, project_id: int, horizon_ns: int, chunk: int, result: RetentionResult) -> int:
    """Up to `chunk` whole traces that ended before the horizon, oldest first, and their spans."""
    candidates = list(
        Trace.objects.filter(
            project_id=project_id, start_time_unix_nano__lt=horizon_ns, end_time_unix_nano__lt=horizon_ns
        )
        .order_by("start_time_unix_nano")
        .values_list("trace_id", flat=True)[:chunk]
    )
    if not candidates:
        return 0
    traces_lock(project_id=project_id, trace_ids=candidates)
    # Read again under the locks: a batch that extended a trace past the horizon meanwhile keeps it.
    expired = list(
        Trace.objects.filter(
            project_id=project_id, trace_id__in=candidates, end_time_unix_nano__lt=horizon_ns
        ).values_list("trace_id", flat=True)
    )
    spans, _ = Span.objects.filter(project_id=project_id, trace_id__in=expired).delete()
    traces, _ = Trace.objects.filter(project_id=project_id, trace_id__in=expired).delete()
    result.spans += spans
    result.traces += traces
    return len(candidates)


@transaction.atomic
def _batches_step(*, project_id: int, horizon: datetime, chunk: int, result: RetentionResult) -> int:
    finished = (IngestBatch.Status.DONE, IngestBatch.Status.FAILED)
    ids = list(
        IngestBatch.objects.filter(project_id=project_id, received_at__lt=horizon, status__in=finished)
        .order_by("pk")
        .values_list("pk", flat=True)[:chunk]
    )
    deleted, _ = IngestBatch.objects.filter(pk__in=ids).delete()
    result.batches += deleted
    return len(ids)


def _gpu_samples_step(*, device_ids: list[int], horizon_ns: int, chunk: int, result: RetentionResult) -> int:
    deleted = _device_rows_step(GpuSample, "time_unix_nano", device_ids=device_ids, horizon_ns=horizon_ns, chunk=chunk)
    result.gpu_samples += deleted
    return deleted


def _gpu_minutes_step(*, device_ids: list[int], horizon_ns: int, chunk: int, result: RetentionResult) -> int:
    deleted = _device_rows_step(
        GpuSampleMinute, "minute_unix_nano", device_ids=device_ids, horizon_ns=horizon_ns, chunk=chunk
    )
    result.gpu_minutes += deleted
    return deleted


@transaction.atomic
def _device_rows_step(
    model: type[GpuSample] | type[GpuSampleMinute],
    time_field: str,
    *,
    device_ids: list[int],
    horizon_ns: int,
    chunk: int,
) -> int:
    """Up to `chunk` of the oldest rows before the horizon, of the first device that has any. The
    rows are keyed (device, time), so a chunk is a time range of one device: one range delete."""
    for device_id in device_ids:
        before = model.objects.filter(device_id=device_id, **{f"{time_field}__lt": horizon_ns})
        times = list(before.order_by(time_field).values_list(time_field, flat=True)[:chunk])
        if times:
            deleted, _ = before.filter(**{f"{time_field}__lte": times[-1]}).delete()
            return deleted
    return 0


def retention_fan_out() -> int:
    """Beat's daily sweep (SWEEP_TASK): one PROJECT_TASK per project. Returns how many were sent."""
    return sum(task_send(PROJECT_TASK, pk) for pk in Project.objects.order_by("pk").values_list("pk", flat=True))
