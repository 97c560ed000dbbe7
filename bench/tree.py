"""Call-tree benchmark: one 10,000-span multi-agent trace, built and served through the API.

The trace goes through the real ingest path (OTLP protobuf bodies of 512 spans, batch_accept,
batch_process), then `GET /api/v1/traces/<id>` is timed in-process (view, queries, tree build,
JSON), and tree.build alone on the same spans.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_bench OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/tree.py --spans 10000
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
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from tracer import ingest, otlp, tree  # noqa: E402
from tracer.models import Span as SpanRow  # noqa: E402
from tracer.projects import apikey_create, project_create  # noqa: E402


def _attr(key: str, value: str | int) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def make_trace(spans: int, *, seed: int = 7) -> tuple[bytes, list[Span]]:
    """A workflow whose orchestrator delegates to sub-agents that call models and tools, some
    sub-agents delegating further: ~`spans` spans in one trace."""
    rng = random.Random(seed)
    trace_id = rng.randbytes(16)
    out: list[Span] = []
    t = 1_800_000_000_000_000_000

    def add(name: str, parent: bytes, attrs: list[KeyValue]) -> bytes:
        nonlocal t
        span_id = rng.randbytes(8)
        t += 1000
        out.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                start_time_unix_nano=t,
                end_time_unix_nano=t + 5_000_000,
                attributes=attrs,
            )
        )
        return span_id

    root = add("invoke_workflow big_run", b"", [_attr("gen_ai.operation.name", "invoke_workflow")])
    agents = [
        add(
            "invoke_agent orchestrator",
            root,
            [_attr("gen_ai.operation.name", "invoke_agent"), _attr("gen_ai.agent.name", "orchestrator")],
        )
    ]
    while len(out) < spans:
        parent = rng.choice(agents)
        roll = rng.random()
        if roll < 0.05:
            name = f"agent_{len(agents)}"
            agents.append(
                add(
                    f"invoke_agent {name}",
                    parent,
                    [_attr("gen_ai.operation.name", "invoke_agent"), _attr("gen_ai.agent.name", name)],
                )
            )
        elif roll < 0.6:
            add(
                "chat nvidia/nemotron-3-nano-30b-a3b",
                parent,
                [
                    _attr("gen_ai.operation.name", "chat"),
                    _attr("gen_ai.request.model", "nvidia/nemotron-3-nano-30b-a3b"),
                    _attr("gen_ai.usage.input_tokens", rng.randint(100, 5000)),
                    _attr("gen_ai.usage.output_tokens", rng.randint(10, 800)),
                ],
            )
        else:
            add(
                "execute_tool search",
                parent,
                [_attr("gen_ai.operation.name", "execute_tool"), _attr("gen_ai.tool.name", "search")],
            )
    return trace_id, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    project = project_create(name=f"tree bench {time.time_ns()}")
    _, secret = apikey_create(project=project, scopes=("read",))
    trace_id, spans = make_trace(args.spans)
    t0 = time.perf_counter()
    for i in range(0, len(spans), 512):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        scope.spans.extend(spans[i : i + 512])
        batch = ingest.batch_accept(project=project, body=request.SerializeToString(), content_type=otlp.PROTOBUF)
        ingest.batch_process(batch_id=batch.pk)
    print(f"ingested {len(spans)} spans of one trace in {time.perf_counter() - t0:.2f}s")

    rows = list(
        SpanRow.objects.filter(project=project).values(
            "span_id",
            "parent_span_id",
            "start_time_unix_nano",
            "kind",
            "agent_name",
            "model",
            *tree.TOKEN_FIELDS,
            "cost",
        )
    )
    builds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        forest = tree.build(rows)
        tree.nested(forest)
        tree.breakdowns(forest)
        builds.append(time.perf_counter() - start)

    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    serves = []
    size = 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        response = client.get(f"/api/v1/traces/{trace_id.hex()}")
        serves.append(time.perf_counter() - start)
        assert response.status_code == 200, response.content[:300]
        size = len(response.content)

    print(f"machine: {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"database: {connection.vendor}")
    print(f"tree build + nested + breakdowns, {len(rows)} spans: median {statistics.median(builds) * 1000:.0f} ms")
    print(
        f"GET /api/v1/traces/<id> ({size / 1e6:.1f} MB JSON): median {statistics.median(serves) * 1000:.0f} ms "
        f"(min {min(serves) * 1000:.0f}, max {max(serves) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
