"""In-process CPU per span of the receiver and of the worker's batch_process, without gunicorn,
Celery or a load generator: 105 POSTs of one 512-span OTLP body through Django's test client,
then batch_process on each stored batch. Process CPU time, so other load on the machine matters
less than in bench/ingest.py's end-to-end figures; use it to compare two commits.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octo_micro OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/ingest_inprocess.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from demo import synthetic  # noqa: E402
from tracer import ingest  # noqa: E402
from tracer.models import IngestBatch  # noqa: E402
from tracer.projects import apikey_create, project_create  # noqa: E402

SPANS = 512
WARMUP, REQUESTS = 5, 100


def main() -> None:
    call_command("migrate", verbosity=0)
    project = project_create(name=f"in-process bench {time.time_ns()}")
    _, secret = apikey_create(project=project)
    body = synthetic.encode(synthetic.make_spans(SPANS // synthetic.SPANS_PER_TRACE + 1)[:SPANS])
    client = Client(HTTP_HOST="localhost")

    def post() -> None:
        response = client.post(
            "/v1/traces", data=body, content_type="application/x-protobuf", HTTP_AUTHORIZATION=f"Bearer {secret}"
        )
        assert response.status_code == 200, response.content

    for _ in range(WARMUP):
        post()
    start = time.process_time()
    for _ in range(REQUESTS):
        post()
    receiver = (time.process_time() - start) / (REQUESTS * SPANS) * 1e6

    batch_ids = list(IngestBatch.objects.filter(project=project).values_list("pk", flat=True))
    start = time.process_time()
    for batch_id in batch_ids:
        ingest.batch_process(batch_id=batch_id)
    worker = (time.process_time() - start) / (len(batch_ids) * SPANS) * 1e6
    print(f"receiver {receiver:.1f} us/span, batch_process {worker:.1f} us/span (in-process CPU)")


if __name__ == "__main__":
    main()
