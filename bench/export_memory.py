"""Export memory benchmark: the spans CSV of 100,000 spans, streamed, with its peak memory.

Stores `--spans` spans (traces of 100 spans with usage, normalized columns and attributes like
a real model call's) straight into the database with bulk inserts, then downloads
`/p/<slug>/export/spans.csv?range=all` in-process through Django's test client (the view, the
chunked queries, the CSV stream) into a sink that only counts bytes. Peak memory is measured
twice: Python allocations during the download (tracemalloc, the bound we care about: it grows
with the rows held at once, not with the export) and the process's resident-set high-water mark
(ru_maxrss, which includes the database driver's C buffers). Run it at two sizes to see the
peak stay flat while the export grows tenfold.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_bench OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/export_memory.py --spans 100000 --spans 10000

`--reports` also times the ROI and token-waste reports on the same data.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from reports import roi, waste  # noqa: E402
from tracer.models import Project, Span, Trace  # noqa: E402
from tracer.projects import project_create  # noqa: E402

SPANS_PER_TRACE = 100
T0 = 1_780_000_000_000_000_000


def load(project: Project, spans: int) -> None:
    traces = spans // SPANS_PER_TRACE
    batch: list[Span] = []
    for t in range(traces):
        trace_id = f"{t:032x}"
        start = T0 + t * 10_000_000_000
        Trace.objects.create(
            project=project,
            trace_id=trace_id,
            root_span_id=f"{1:016x}",
            root_span_name="invoke_workflow research",
            start_time_unix_nano=start,
            end_time_unix_nano=start + 9_000_000_000,
            span_count=SPANS_PER_TRACE,
            input_tokens=99 * 1200,
            output_tokens=99 * 300,
            total_tokens=99 * 1500,
            cost=Decimal("0.1188"),
        )
        for s in range(1, SPANS_PER_TRACE + 1):
            root = s == 1
            batch.append(
                Span(
                    project=project,
                    trace_id=trace_id,
                    span_id=f"{s:016x}",
                    parent_span_id="" if root else f"{1:016x}",
                    name="invoke_workflow research" if root else f"chat nvidia/nemotron-{s % 3}",
                    start_time_unix_nano=start + s * 1_000_000,
                    end_time_unix_nano=start + s * 1_000_000 + 800_000,
                    service_name="bench",
                    kind="workflow" if root else "llm",
                    agent_name="" if root else f"agent-{s % 7}",
                    model="" if root else f"nvidia/nemotron-{s % 3}",
                    provider="" if root else "nvidia",
                    input_tokens=None if root else 1200,
                    output_tokens=None if root else 300,
                    total_tokens=None if root else 1500,
                    billed=not root,
                    cost=None if root else Decimal("0.0012"),
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": f"nvidia/nemotron-{s % 3}",
                        "octotrace.input.message_hashes": [f"{h:016x}" for h in range(s % 12)],
                    },
                )
            )
            if len(batch) >= 5000:
                Span.objects.bulk_create(batch)
                batch.clear()
    Span.objects.bulk_create(batch)


def measure(client: Client, slug: str) -> tuple[int, int, float, int]:
    """(bytes, rows, seconds, tracemalloc peak bytes) of one spans CSV download."""
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    response = client.get(f"/p/{slug}/export/spans.csv?range=all")
    assert response.status_code == 200, response.status_code
    size = rows = 0
    for piece in response.streaming_content:
        size += len(piece)
        rows += piece.count(b"\r\n")
    response.close()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size, rows - 1, elapsed, peak


def time_reports(project: Project) -> None:
    """The ROI and token-waste reports over the same spans (each call has a message fingerprint)."""
    traces = Trace.objects.filter(project=project)
    started = time.perf_counter()
    roi.roi_compute(project=project, traces=traces)
    roi_seconds = time.perf_counter() - started
    started = time.perf_counter()
    waste.waste_compute(project=project, traces=traces)
    waste_seconds = time.perf_counter() - started
    print(f"  roi_report={roi_seconds:.2f}s token_waste_report={waste_seconds:.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, action="append", help="spans to export (repeatable)")
    parser.add_argument("--reports", action="store_true", help="also time the ROI and token-waste reports")
    args = parser.parse_args()
    sizes = args.spans or [100_000]
    call_command("migrate", verbosity=0)
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"# export memory bench: {platform.python_version()}, {engine}, {os.cpu_count()} CPUs")
    user, _ = User.objects.get_or_create(username="export-bench")
    for spans in sizes:
        project = project_create(name=f"export bench {spans} {time.time_ns()}", owner=user)
        try:
            started = time.perf_counter()
            load(project, spans)
            loaded = time.perf_counter() - started
            client = Client(HTTP_HOST="127.0.0.1")
            client.force_login(user)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            size, rows, elapsed, peak = measure(client, project.slug)
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(
                f"spans={spans:,} rows={rows:,} csv={size / 1e6:.1f} MB load={loaded:.1f}s "
                f"export={elapsed:.1f}s ({rows / elapsed:,.0f} rows/s) "
                f"python_peak={peak / 1e6:.1f} MB rss_high_water={rss_after / 1024:.0f} MB "
                f"(+{(rss_after - rss_before) / 1024:.0f} MB during the export)"
            )
            assert rows == spans, (rows, spans)
            if args.reports:
                time_reports(project)
        finally:
            Project.objects.filter(pk=project.pk).delete()
            connection.close()


if __name__ == "__main__":
    main()
