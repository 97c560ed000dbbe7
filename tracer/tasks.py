"""Celery tasks: thin wrappers that take ids and call one service each."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from tracer import ingest, pricing


@shared_task(
    name=ingest.PROCESS_TASK,
    acks_late=True,
    ignore_result=True,
    # Only a database that is briefly away (restart, failover, deadlock victim) is worth a retry;
    # anything else is a bug or bad data and is recorded on the batch instead.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=120,
    time_limit=180,
)
def process_batch(batch_id: int) -> None:
    try:
        ingest.batch_process(batch_id=batch_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        ingest.batch_mark_failed(batch_id=batch_id, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(name="ingest.requeue_stuck", ignore_result=True, time_limit=300)
def requeue_stuck() -> int:
    return ingest.batches_requeue_stuck()


@shared_task(name="ingest.purge_raw_bodies", ignore_result=True, time_limit=600)
def purge_raw_bodies() -> int:
    return ingest.raw_bodies_purge()


@shared_task(
    name="prices.reprice_project",
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
