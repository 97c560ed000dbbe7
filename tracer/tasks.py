"""Celery tasks: thin wrappers that take ids and call one service each."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from tracer import batches, ingest, pricing
from tracer import retention as data_retention
from tracer.celery import task_send
from tracer.gpu import attribution, metrics, retention, sampling

# A task that turns one stored batch into rows. Only a database that is briefly away (restart,
# failover, deadlock victim) is worth a retry; anything else is a bug or bad data and is recorded
# on the batch instead.
STORED_BATCH_TASK = {
    "acks_late": True,
    "ignore_result": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 5,
}


def _process_or_record(kind: batches.BatchKind, process: Callable[..., Any], batch_id: int) -> Any:
    try:
        return process(batch_id=batch_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        batches.batch_mark_failed(kind=kind, batch_id=batch_id, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(name=ingest.PROCESS_TASK, soft_time_limit=120, time_limit=180, **STORED_BATCH_TASK)
def process_batch(batch_id: int) -> None:
    _process_or_record(ingest.BATCHES, ingest.batch_process, batch_id)


@shared_task(name="ingest.requeue_stuck", ignore_result=True, time_limit=300)
def requeue_stuck() -> int:
    return batches.batches_requeue_stuck(kind=ingest.BATCHES)


@shared_task(name="ingest.purge_raw_bodies", ignore_result=True, time_limit=600)
def purge_raw_bodies() -> int:
    return batches.batches_purge(kind=ingest.BATCHES)


@shared_task(
    name=pricing.REPRICE_TASK,
    acks_late=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=5,
    soft_time_limit=1800,
    time_limit=1900,
)
def reprice_project(project_id: int) -> None:
    """After a price override changed: stored costs and trace rollups follow the new prices."""
    pricing.spans_reprice(project_id=project_id)


# --- GPU telemetry (tracer/gpu/) ---------------------------------------------------------------
# Routed to the gpu queue by name (task_routes "gpu.*" in tracer/celery.py); beat sends gpu.sample to
# the sampling host's own queue, gpu.<host>.


@shared_task(
    name="gpu.sample",
    acks_late=False,  # a lost sampling run is not worth running late: the next one is seconds away
    ignore_result=True,
    soft_time_limit=max(30, 3 * settings.OCTOTRACE_GPU_SAMPLE_SECONDS),
    time_limit=max(60, 4 * settings.OCTOTRACE_GPU_SAMPLE_SECONDS),
)
def gpu_sample(host: str) -> int:
    # Leave a second before the next run is due for the bulk write.
    readings = max(1, settings.OCTOTRACE_GPU_SAMPLE_SECONDS // settings.OCTOTRACE_GPU_SAMPLE_INTERVAL_SECONDS - 1)
    return sampling.gpu_sample(
        host=host, readings=readings, interval_s=float(settings.OCTOTRACE_GPU_SAMPLE_INTERVAL_SECONDS)
    )


@shared_task(name=metrics.PROCESS_TASK, soft_time_limit=60, time_limit=90, **STORED_BATCH_TASK)
def gpu_process_metrics(batch_id: int) -> int | None:
    return _process_or_record(metrics.BATCHES, metrics.metrics_batch_process, batch_id)


@shared_task(name="gpu.requeue_stuck_metrics", acks_late=True, ignore_result=True, time_limit=300)
def gpu_requeue_stuck_metrics() -> int:
    return batches.batches_requeue_stuck(kind=metrics.BATCHES)


@shared_task(
    name=attribution.ATTRIBUTE_TASK,
    acks_late=True,
    ignore_result=True,
    # Only the selection reads the database (the sends never raise), so a retry sends nothing twice.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_jitter=True,
    max_retries=2,
    soft_time_limit=20,
    time_limit=30,
)
def gpu_attribute() -> int:
    """Beat's sweep, every minute: enqueue one gpu.attribute_project per project with GPU samples."""
    return attribution.gpu_attribute_fan_out(now_ns=time.time_ns())


@shared_task(
    name=attribution.ATTRIBUTE_PROJECT_TASK,
    acks_late=True,  # idempotent: a rerun replaces the figures
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),  # a database briefly away, a deadlock victim
    retry_backoff=2,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
    # Within the minute between sweeps, so passes over one project do not pile up.
    soft_time_limit=50,
    time_limit=55,
)
def gpu_attribute_project(project_id: int) -> int:
    """One project's GPU attribution over the last window, ending when the task runs."""
    return attribution.gpu_attribute_recent(project_id=project_id, now_ns=time.time_ns()).attributed


@shared_task(name="gpu.downsample", acks_late=True, ignore_result=True, time_limit=1800)
def gpu_downsample() -> int:
    return retention.samples_downsample().minutes


@shared_task(name="gpu.prune", acks_late=True, ignore_result=True, time_limit=1800)
def gpu_prune() -> int:
    return retention.rollups_prune() + batches.batches_purge(kind=metrics.BATCHES)


@shared_task(name=data_retention.SWEEP_TASK, ignore_result=True, time_limit=60)
def retention_sweep() -> int:
    """Beat's daily sweep: one retention.project per project."""
    return data_retention.retention_fan_out()


@shared_task(
    name=data_retention.PROJECT_TASK,
    acks_late=True,  # idempotent: a rerun deletes what is left
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=settings.OCTOTRACE_RETENTION_BUDGET_SECONDS + 120,
    time_limit=settings.OCTOTRACE_RETENTION_BUDGET_SECONDS + 180,
)
def retention_project(project_id: int) -> bool:
    """Delete one project's data past its horizon in bounded steps; when the time budget runs out,
    send itself again to go on (a big first run spreads over several tasks)."""
    result = data_retention.retention_apply(project_id=project_id, budget_s=settings.OCTOTRACE_RETENTION_BUDGET_SECONDS)
    if not result.done:
        task_send(data_retention.PROJECT_TASK, project_id)
    return result.done
