"""One queue per kind of work (tracer/celery.py `Queues`): workers started on `-Q ingest`, `-Q gpu` and
`-Q reports` each run only their own kind, as on separate hosts (docs/deploy.md "Past one machine")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.factories import corpus_bytes, wait_until_processed
from tracer import otlp
from tracer.celery import task_send
from tracer.models import Span

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# What each worker must run, and only it.
KINDS = {
    "ingest": "ingest.process_batch",
    "gpu": "gpu.requeue_stuck_metrics",
    "reports": "reports.budgets_check",
}


def wait_for(log: Path, task: str, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith("[") and f"Task {task}[" in line and "succeeded" in line for line in log.open()):
            return
        time.sleep(0.25)
    pytest.fail(f"{task} did not succeed on {log.name} within {timeout}s:\n{log.read_text()[-3000:]}")


def test_workers_on_separate_queues_each_run_only_their_own_kind_of_work(
    live_server, worker_factory, tmp_path, project_a, key_a
) -> None:
    for queue in KINDS:
        worker_factory(queue, queues=queue, concurrency=1)

    response = requests.post(
        f"{live_server.url}/v1/traces",
        data=corpus_bytes("otel-openai-v2-multiagent-nocontent.pb"),
        headers={"Content-Type": otlp.PROTOBUF, "Authorization": f"Bearer {key_a[1]}"},
        timeout=30,
    )
    assert response.status_code == 200, response.content
    task_send("gpu.requeue_stuck_metrics")
    task_send("reports.budgets_check")

    wait_until_processed(project_a)
    assert Span.objects.filter(project=project_a).exists()
    for queue, task in KINDS.items():
        wait_for(tmp_path / f"{queue}.log", task)
    for queue in KINDS:
        log = (tmp_path / f"{queue}.log").read_text()
        others = [task for other, task in KINDS.items() if other != queue and f"Task {task}[" in log]
        assert others == [], f"the {queue} worker ran {others}"
