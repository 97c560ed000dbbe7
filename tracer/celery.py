"""The Celery app: `celery -A tracer worker` and `celery -A tracer beat`.

A worker started without `-Q` consumes every queue below; production splits them with `-Q`.
"""

from __future__ import annotations

import enum
import logging
import os

from celery import Celery
from django.conf import settings
from django.db import transaction
from kombu import Queue

log = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Queues(enum.StrEnum):
    INGEST = "ingest"
    GPU = "gpu"
    REPORTS = "reports"
    DEFAULT = "default"


def gpu_sampling_schedule() -> dict[str, dict]:
    """One sampling entry per GPU host (OCTOTRACE_GPU_HOSTS), sent to that host's own queue
    `gpu.<host>`, which only the worker on that host consumes (`celery -A tracer worker -Q gpu.$HOST`).
    A message not picked up before the next one is due expires, so a host that was down does not
    come back to a backlog of stale sampling runs."""
    every = float(settings.OCTOTRACE_GPU_SAMPLE_SECONDS)
    return {
        f"gpu-sample-{host}": {
            "task": "gpu.sample",
            "schedule": every,
            "args": [host],
            "options": {"queue": f"gpu.{host}", "expires": every},
        }
        for host in settings.OCTOTRACE_GPU_HOSTS
    }


app = Celery("tracer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(q.value, routing_key=q.value) for q in Queues],
    task_default_queue=Queues.DEFAULT.value,
    task_default_routing_key=Queues.DEFAULT.value,
    # Queue per kind of work, by task name prefix.
    task_routes={
        "ingest.*": {"queue": Queues.INGEST.value},
        "reports.*": {"queue": Queues.REPORTS.value},
        "gpu.*": {"queue": Queues.GPU.value},
    },
    # A task is acknowledged after it ran, so a worker killed mid-task does not lose it ...
    task_acks_late=True,
    # ... and a task whose worker process died is put back instead of being marked failed.
    task_reject_on_worker_lost=True,
    # Take one message at a time: ingest tasks are long compared with a round trip.
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    # Every periodic schedule lives here.
    beat_schedule={
        # Finds batches whose broker message was lost or whose worker died, and re-enqueues them.
        "ingest-requeue-stuck": {
            "task": "ingest.requeue_stuck",
            "schedule": 60.0,
            "options": {"queue": Queues.INGEST.value},
        },
        # Drops raw bodies of processed batches past OCTOTRACE_RAW_RETENTION_HOURS.
        "ingest-purge-raw-bodies": {
            "task": "ingest.purge_raw_bodies",
            "schedule": 3600.0,
            "options": {"queue": Queues.INGEST.value},
        },
        # Fans out one reports.budget_check_project per project with a budget, which compares its
        # spend with its daily and monthly budgets and enqueues one reports.alert_deliver per
        # threshold newly reached (50/90/100%, once per period per threshold: reports/budgets.py).
        # A sweep still queued when the next one is due is dropped.
        "reports-budgets-check": {
            "task": "reports.budgets_check",
            "schedule": 300.0,
            "options": {"queue": Queues.REPORTS.value, "expires": 290},
        },
        # GPU metrics batches whose message was lost or whose worker died go back to the queue.
        "gpu-requeue-stuck-metrics": {
            "task": "gpu.requeue_stuck_metrics",
            "schedule": 60.0,
            "options": {"queue": Queues.GPU.value},
        },
        # Each LLM span's share of its endpoint's GPU seconds, energy and dollars, over the last
        # OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES (recomputed, so late samples and spans count):
        # a sweep that enqueues one gpu.attribute_project per project with GPU samples in the window.
        "gpu-attribute": {
            "task": "gpu.attribute",
            "schedule": 60.0,
            "options": {"queue": Queues.GPU.value, "expires": 55},
        },
        # Samples older than OCTOTRACE_GPU_RAW_RETENTION_HOURS become per-minute rollups.
        "gpu-downsample": {
            "task": "gpu.downsample",
            "schedule": 3600.0,
            "options": {"queue": Queues.GPU.value},
        },
        # Rollups past OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS and processed metrics batches are deleted.
        "gpu-prune": {
            "task": "gpu.prune",
            "schedule": 86400.0,
            "options": {"queue": Queues.GPU.value},
        },
        # Fans out one retention.project per project, which deletes its traces, spans, stored batches
        # and GPU samples past its retention (OCTOTRACE_RETENTION_DAYS or the project's own), in
        # bounded transactions; on the default queue, apart from ingest.
        "retention-sweep": {
            "task": "retention.sweep",
            "schedule": 86400.0,
            "options": {"queue": Queues.DEFAULT.value, "expires": 3600},
        },
        # Sampling on each GPU host, on its own queue (see gpu_sampling_schedule).
        **gpu_sampling_schedule(),
    },
)
app.autodiscover_tasks()


# --- The one way to enqueue a task -----------------------------------------------------------


def task_send(name: str, *args: object, countdown: float | None = None) -> bool:
    """Send task `name` to the broker now, routed by its name (task_routes above). A broker failure
    is logged and answered False, never raised: callers enqueue work whose state is already stored
    (a batch row, a report run), and a sweeper or the next periodic run picks it up."""
    try:
        app.send_task(name, args=list(args), countdown=countdown)
    except Exception:  # noqa: BLE001 - any broker failure; the stored state is safe and will be swept
        log.warning("could not enqueue %s%r; it will be retried by its sweeper", name, args, exc_info=True)
        return False
    return True


def task_enqueue(name: str, *args: object, countdown: float | None = None) -> None:
    """Enqueue task `name` once the current transaction commits (at once outside a transaction), so
    a worker never looks for a row that is not committed. Tasks take ids, never instances."""
    transaction.on_commit(lambda: task_send(name, *args, countdown=countdown))
