"""The small fixture set the report tests check by hand (see docs/reports.md for the formulas).

Prices: MODEL at $2 input, $0.50 cached input, $10 output per 1M tokens; UNPRICED_MODEL has none.

T1 "invoke_workflow research", Mon 2026-03-02 10:00, ok, $8.25:
   planner: chat 1M in / 100k out, messages a(300) b(700)                         $3.00
   writer:  chat 2M in (500k cached) / 200k out, messages a(300) b(700) c(1000)   $5.25
            -> re-sent 2M x 1000/2000 = 1M; cacheable prefix a,b = 1M, 500k not cached,
               saving 500k x ($2 - $0.50) / 1M = $0.75
T2 "invoke_workflow research", Wed 2026-03-04 10:00, error (a failed span), $2.00:
   chat 1M in / 0 out, no message data (not analysed)
T3 "invoke_workflow research", Tue 2026-03-10 10:00, ok but octotrace.success = false, $1.50:
   critic: chat 250k in / 25k out, captured content m1(100) m2(100)               $0.75
           chat 250k in / 25k out, captured content m1 m2 m3(200)                 $0.75
           -> re-sent 250k x 200/400 = 125k; cacheable 125k; saving $0.1875
T4 "invoke_workflow triage", Tue 2026-03-10 11:00, ok, unpriced:
   chat UNPRICED_MODEL 100 in / 10 out, messages x(10)
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from tests.factories import MODEL, UNPRICED_MODEL, chat, ingest_spans, ns, otlp_span, price, sid, tid
from tracer.models import Project

T1, T2, T3, T4 = tid(1), tid(2), tid(3), tid(4)
RESEARCH = "invoke_workflow research"
TRIAGE = "invoke_workflow triage"
START_T1 = ns("2026-03-02T10:00:00")
START_T2 = ns("2026-03-04T10:00:00")
START_T3 = ns("2026-03-10T10:00:00")
START_T4 = ns("2026-03-10T11:00:00")
MS = 1_000_000


def with_arrays(span, **arrays: list[Any]):
    """Add array-valued attributes (OTLP ArrayValue), as the SDK's message fingerprints are."""
    for key, values in arrays.items():
        items = [AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v) for v in values]
        span.attributes.append(KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items))))
    return span


def fingerprinted(span, hashes: list[str], tokens: list[int]):
    return with_arrays(span, **{"octotrace.input.message_hashes": hashes, "octotrace.input.message_tokens": tokens})


def workflow_root(trace: str, name: str, start: int, **attrs: Any):
    return otlp_span(
        sid(1),
        trace=trace,
        name=name,
        start=start,
        duration=60_000 * MS,
        attrs={"gen_ai.operation.name": "invoke_workflow", **attrs},
    )


def agent_span(trace: str, n: int, name: str, start: int):
    return otlp_span(
        sid(n),
        sid(1),
        trace=trace,
        name=f"invoke_agent {name}",
        start=start,
        duration=10_000 * MS,
        attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
    )


def captured(*texts: str) -> str:
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": t}]} for t in texts])


def load(project: Project) -> None:
    """Prices and the four traces above, through the real ingest path."""
    price(input="2", cached_input="0.5", output="10")
    ingest_spans(
        project,
        workflow_root(T1, RESEARCH, START_T1),
        agent_span(T1, 2, "planner", START_T1 + 1 * MS),
        fingerprinted(
            otlp_span(sid(3), sid(2), trace=T1, start=START_T1 + 2 * MS, attrs=chat(input=1_000_000, output=100_000)),
            ["a", "b"],
            [300, 700],
        ),
        agent_span(T1, 4, "writer", START_T1 + 20_000 * MS),
        fingerprinted(
            otlp_span(
                sid(5),
                sid(4),
                trace=T1,
                start=START_T1 + 20_001 * MS,
                attrs=chat(input=2_000_000, cached=500_000, output=200_000),
            ),
            ["a", "b", "c"],
            [300, 700, 1000],
        ),
    )
    ingest_spans(
        project,
        workflow_root(T2, RESEARCH, START_T2),
        otlp_span(sid(2), sid(1), trace=T2, start=START_T2 + MS, error=True, attrs=chat(input=1_000_000, output=0)),
    )
    m1, m2, m3 = "q" * 400, "r" * 400, "s" * 800
    ingest_spans(
        project,
        workflow_root(T3, RESEARCH, START_T3, **{"octotrace.success": False}),
        agent_span(T3, 2, "critic", START_T3 + MS),
        otlp_span(
            sid(3),
            sid(2),
            trace=T3,
            start=START_T3 + 2 * MS,
            attrs=chat(input=250_000, output=25_000, **{"gen_ai.input.messages": captured(m1, m2)}),
        ),
        otlp_span(
            sid(4),
            sid(2),
            trace=T3,
            start=START_T3 + 3 * MS,
            attrs=chat(input=250_000, output=25_000, **{"gen_ai.input.messages": captured(m1, m2, m3)}),
        ),
    )
    ingest_spans(
        project,
        workflow_root(T4, TRIAGE, START_T4),
        fingerprinted(
            otlp_span(
                sid(2), sid(1), trace=T4, start=START_T4 + MS, attrs=chat(model=UNPRICED_MODEL, input=100, output=10)
            ),
            ["x"],
            [10],
        ),
    )


def csv_rows(response) -> list[dict[str, str]]:
    """A CSV download's rows (Django's test client), after checking it is one."""
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


__all__ = ["MODEL", "UNPRICED_MODEL", "csv_rows", "load"]
