"""The Celery app: `celery -A tracer worker` and `celery -A tracer beat`.

A worker started without `-Q` consumes every queue below; production splits them with `-Q`.
"""

from __future__ import annotations

import enum
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracer.settings")


class Queues(enum.StrEnum):
    INGEST = "ingest"
    GPU = "gpu"
    REPORTS = "reports"
    DEFAULT = "default"


app = Celery("tracer")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(q.value, routing_key=q.value) for q in Queues],
    task_default_queue=Queues.DEFAULT.value,
    task_default_routing_key=Queues.DEFAULT.value,
    # Queue per kind of work, by task name prefix.
    task_routes={"ingest.*": {"queue": Queues.INGEST.value}, "reports.*": {"queue": Queues.REPORTS.value}},
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
        # Compares each project's spend with its daily and monthly budgets; alerts at 50/90/100%
        # (once per period per threshold, see dashboard/reports/budgets.py).
        "reports-budgets-check": {
            "task": "reports.budgets_check",
            "schedule": 300.0,
            "options": {"queue": Queues.REPORTS.value},
        },
    },
)
app.autodiscover_tasks()
