"""Dashboard benchmark: server time of the trace page on a 10,000-span trace, and of the list
pages with 100,000 traces in the project.

Data goes through the real ingest path (OTLP protobuf bodies, batch_accept, batch_process); pages
are timed in-process through Django's test client as a logged-in member (view, queries, template).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_bench OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/dashboard.py --traces 100000 --spans 10000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from bench.tree import _attr, make_trace  # noqa: E402  (sets up Django)
from dashboard.selectors import TREES  # noqa: E402
from tracer import ingest, otlp  # noqa: E402
from tracer.projects import project_create  # noqa: E402

AGENTS = ["planner", "researcher", "coder", "critic", "writer"]
MODELS = ["nvidia/nemotron-3-nano-30b-a3b", "nvidia/llama-3.3-nemotron-super-49b-v1.5", "acme/unpriced-1"]


def send(project, spans: list[Span], *, chunk: int = 1500) -> None:
    for i in range(0, len(spans), chunk):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        scope.spans.extend(spans[i : i + chunk])
        batch = ingest.batch_accept(project=project, body=request.SerializeToString(), content_type=otlp.PROTOBUF)
        ingest.batch_process(batch_id=batch.pk)


def small_traces(count: int, *, seed: int = 3) -> list[Span]:
    """`count` three-span traces (workflow, agent, chat) spread over the last six days."""
    rng = random.Random(seed)
    now = time.time_ns()
    spans: list[Span] = []
    for n in range(count):
        trace_id = rng.randbytes(16)
        start = now - rng.randrange(6 * 86_400 * 10**9)
        agent, model = rng.choice(AGENTS), rng.choice(MODELS)
        ids = [rng.randbytes(8) for _ in range(3)]
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=ids[0],
                name=f"invoke_workflow flow_{n % 7}",
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randrange(10**8, 10**10),
                attributes=[_attr("gen_ai.operation.name", "invoke_workflow")],
            )
        )
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=ids[1],
                parent_span_id=ids[0],
                name=f"invoke_agent {agent}",
                start_time_unix_nano=start + 1,
                end_time_unix_nano=start + 10**8,
                attributes=[_attr("gen_ai.operation.name", "invoke_agent"), _attr("gen_ai.agent.name", agent)],
            )
        )
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=ids[2],
                parent_span_id=ids[1],
                name=f"chat {model}",
                start_time_unix_nano=start + 2,
                end_time_unix_nano=start + 9 * 10**7,
                attributes=[
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.request.model", model),
                    _attr("gen_ai.usage.input_tokens", rng.randint(100, 5000)),
                    _attr("gen_ai.usage.output_tokens", rng.randint(10, 800)),
                ],
            )
        )
    return spans


def timed(client: Client, url: str, repeat: int, *, cold: bool = False) -> tuple[float, int]:
    """Median server time of `repeat` GETs. `cold`: empty the call-tree cache before each, so every
    request builds the tree (what the first view of a trace in a web process costs)."""
    times, size = [], 0
    for _ in range(repeat):
        if cold:
            TREES.clear()
        start = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        size = len(response.content)
    return statistics.median(times) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    stamp = time.time_ns()
    user = get_user_model().objects.create_user(f"bench{stamp}")
    project = project_create(name=f"dashboard bench {stamp}", owner=user)

    t0 = time.perf_counter()
    send(project, small_traces(args.traces))
    print(f"ingested {args.traces} traces ({3 * args.traces} spans) in {time.perf_counter() - t0:.0f}s")
    trace_id, big = make_trace(args.spans)
    now = time.time_ns() - 3600 * 10**9
    shift = now - min(s.start_time_unix_nano for s in big)
    for span in big:  # into the default time range
        span.start_time_unix_nano += shift
        span.end_time_unix_nano += shift
    send(project, big, chunk=512)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    base = f"/p/{project.slug}"
    expand = f"{base}/traces/{trace_id.hex()}/children?parent={big[1].span_id.hex()}"
    trees = [
        ("trace page, 10,000-span trace (tree built)", f"{base}/traces/{trace_id.hex()}/"),
        ("expand, tree built (first in this process)", expand),
    ]
    pages = [
        ("trace page, 10,000-span trace (tree cached)", f"{base}/traces/{trace_id.hex()}/"),
        ("trace page with a span's panel", f"{base}/traces/{trace_id.hex()}/?span={big[5].span_id.hex()}"),
        ("expand: children of the orchestrator (tree cached)", expand),
        ("traces list, newest first", f"{base}/traces/"),
        ("traces list, page 1000", f"{base}/traces/?page=1000"),
        ("traces list, sorted by cost", f"{base}/traces/?sort=-cost"),
        ("traces list, filtered by agent", f"{base}/traces/?agent=critic"),
        ("traces list, filtered by model + status", f"{base}/traces/?model={MODELS[0]}&status=ok"),
        ("traces list, text search", f"{base}/traces/?q=flow_3"),
        ("overview (7 days)", f"{base}/"),
        ("agents (7 days)", f"{base}/agents/"),
        ("models (7 days)", f"{base}/models/"),
    ]
    print(f"machine: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"database: {connection.vendor}; {args.traces + 1} traces, {3 * args.traces + len(big)} spans in the project")
    for label, url in trees:
        ms, size = timed(client, url, args.repeat, cold=True)
        print(f"{label:50s} median {ms:7.0f} ms  ({size / 1000:.0f} kB HTML)")
    for label, url in pages:
        ms, size = timed(client, url, args.repeat)
        print(f"{label:50s} median {ms:7.0f} ms  ({size / 1000:.0f} kB HTML)")


if __name__ == "__main__":
    main()
