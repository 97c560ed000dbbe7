"""Content storage benchmark: what a long agent session costs to store with content capture on,
with the message store (tracer/messages.py) and without it (spans keep the text, as before), and
how fast ingest runs with content on (store on, store off) and off.

One session of N turns: call n carries the system instructions, every earlier message and its
answer (`gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`, the
OTel GenAI JSON attributes), words drawn at random so that compression is not flattered. The calls
go through the real ingest path (OTLP protobuf bodies, batch_accept, batch_process), `--per-batch`
calls a body. Stored bytes = growth of pg_total_relation_size of the span, message and chain
tables (indexes and TOAST included; the raw batches kept for replay are not counted). Distinct
content = bytes of each distinct message's JSON, once.

PostgreSQL only; it TRUNCATEs the span, trace, batch and message tables of the database it is given:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_bench OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/content_storage.py --turns 60 200 1000 --before-max 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from tracer import ingest, otlp  # noqa: E402
from tracer.projects import project_create  # noqa: E402

TABLES = ("tracer_span", "tracer_message", "tracer_messagechain")
WORDS = [f"w{n:x}" for n in range(4096)] + ["the", "cost", "token", "agent", "model", "cache", "prompt"]


def _attr(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def session(turns: int, *, content: bool, seed: int = 7, tally: list[int]) -> Iterator[Span]:
    """The session's spans, made as they are sent (a 1,000-turn session is a gigabyte of JSON);
    the distinct content in bytes is added to `tally[0]`."""
    rng = random.Random(seed)
    trace_id = rng.randbytes(16)
    start = time.time_ns() - turns * 10**9
    system = [{"type": "text", "content": _text(rng, 4000)}]
    tally[0] += len(json.dumps(system[0]))
    history: list[dict] = []
    for turn in range(turns):
        question = {"role": "user", "parts": [{"type": "text", "content": _text(rng, 600)}]}
        answer = {"role": "assistant", "parts": [{"type": "text", "content": _text(rng, 1200)}]}
        history.append(question)
        tally[0] += len(json.dumps(question)) + len(json.dumps(answer))
        attributes = [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.provider.name", "openai"),
            _attr("gen_ai.request.model", "gpt-4o-mini"),
            _attr("gen_ai.conversation.id", "bench-session"),
            _attr("gen_ai.usage.input_tokens", 1000 + 450 * turn),
            _attr("gen_ai.usage.output_tokens", 300),
        ]
        if content:
            attributes += [
                _attr("gen_ai.system_instructions", json.dumps(system)),
                _attr("gen_ai.input.messages", json.dumps(history)),
                _attr("gen_ai.output.messages", json.dumps([answer])),
            ]
        yield Span(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            name="chat gpt-4o-mini",
            kind=Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=start + turn * 10**9,
            end_time_unix_nano=start + turn * 10**9 + 5 * 10**8,
            attributes=attributes,
        )
        history.append(answer)


def relations_size() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in TABLES))
        return cursor.fetchone()[0]


def reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracer_span, tracer_trace, tracer_ingestbatch, tracer_message, tracer_messagechain")


def run(project, spans: Iterator[Span], *, per_batch: int) -> tuple[float, int]:
    """Seconds spent in ingest (accept + process; making the bodies is not counted), and bytes of
    the OTLP bodies."""
    seconds = 0.0
    size = 0
    while chunk := list(itertools.islice(spans, per_batch)):
        request = ExportTraceServiceRequest()
        request.resource_spans.add().scope_spans.add().spans.extend(chunk)
        body = request.SerializeToString()
        size += len(body)
        started = time.perf_counter()
        batch = ingest.batch_accept(project=project, body=body, content_type=otlp.PROTOBUF)
        ingest.batch_process(batch_id=batch.pk)
        seconds += time.perf_counter() - started
    return seconds, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[60, 200, 1000])
    parser.add_argument("--per-batch", type=int, default=10, help="calls per OTLP body")
    parser.add_argument(
        "--before-max", type=int, default=200, help="measure the store off only up to this many turns (quadratic)"
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only: set DATABASE_URL")
    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)
    print(f"# {now:%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# {connection.cursor().connection.info.server_version}, {args.per_batch} calls per body")
    header = "turns  mode               body MB  stored MB  stored/turn KB  distinct KB  stored/distinct  spans/s"
    print(header)
    # A first small run warms the caches (price book, prepared statements) for every mode.
    reset()
    warm_up = project_create(name=f"bench warm-up {time.time_ns()}")
    run(warm_up, session(10, content=True, tally=[0]), per_batch=args.per_batch)
    for turns in args.turns:
        modes = [("content off", False, True), ("content on, store", True, True)]
        if turns <= args.before_max:
            modes.insert(1, ("content on, no store", True, False))
        for label, content, store in modes:
            reset()
            settings.OCTOTRACE_MESSAGE_STORE = store
            project = project_create(name=f"bench {turns} {label} {time.time_ns()}")
            tally = [0]
            before = relations_size()
            seconds, body = run(project, session(turns, content=content, tally=tally), per_batch=args.per_batch)
            distinct = tally[0]
            stored = relations_size() - before
            ratio = f"{stored / distinct:15.2f}" if content else f"{'':>15}"
            print(
                f"{turns:5}  {label:<18} {body / 1e6:8.1f} {stored / 1e6:10.2f} {stored / turns / 1e3:15.1f}"
                f" {distinct / 1e3:12.0f} {ratio} {turns / seconds:8.0f}",
                flush=True,
            )
    reset()


if __name__ == "__main__":
    main()
