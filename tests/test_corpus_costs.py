"""Every corpus capture, through the real ingest services, normalized, nested and priced exactly.

The expected values are worked out here, independently of tracer/semconv.py and tracer/tree.py:
per span from the capture's expected.json (raw attributes decoded by opentelemetry-proto), per
trace from the corpus's totals.json, and the cost from the mock's per-call table in the corpus
README times prices picked by hand from tracer/data/prices.json.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.factories import CORPUS, CORPUS_CAPTURES, corpus_bytes
from tracer import ingest, otlp, rollup
from tracer.models import Project, Span, Trace

CAPTURE_IDS = [stem for stem, _, _ in CORPUS_CAPTURES]
PRICE_CATALOG = Path(__file__).resolve().parent.parent / "tracer" / "data" / "prices.json"
TEN_PLACES = Decimal("0.0000000001")
CENT = Decimal("0.01")
PER_MILLION = Decimal(1_000_000)

# --- How the instrumentations in the corpus name things (see the corpus README) ---------------

# (attribute, {value as the corpus spells it: normalized kind}), framework kinds first.
KIND_RULES: list[tuple[str, dict[str, str]]] = [
    (
        "openinference.span.kind",
        {"LLM": "llm", "EMBEDDING": "embedding", "TOOL": "tool", "AGENT": "agent", "CHAIN": "workflow"},
    ),
    ("traceloop.span.kind", {"workflow": "workflow", "agent": "agent", "tool": "tool"}),
    (
        "gen_ai.operation.name",
        {
            "chat": "llm",
            "embeddings": "embedding",
            "execute_tool": "tool",
            "invoke_agent": "agent",
            "invoke_workflow": "workflow",
        },
    ),
]
# The same number under each library's names; the first present wins (never added up).
INPUT_KEYS = ("gen_ai.usage.input_tokens", "llm.token_count.prompt")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "llm.token_count.completion")
CACHED_KEYS = ("gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read")
REASONING_KEYS = ("gen_ai.usage.reasoning_tokens", "llm.token_count.completion_details.reasoning")
TOTAL_KEYS = ("gen_ai.usage.total_tokens", "llm.token_count.total")
# Token-ish attributes that are not usage (expected.json's filter also catches these).
NOT_USAGE_KEYS = ("gen_ai.request.max_tokens",)
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.model_name", "embedding.model_name")
REQUEST_MODEL_KEYS = ("gen_ai.request.model",)
# Every capture talked to the mock at 127.0.0.1, which names no known provider host, so the
# provider is what the span declares.
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.system")
AGENTS = {"orchestrator", "researcher", "analyst"}

# --- What the mock returned (corpus README, "What the mock actually returned") -----------------

ULTRA = "nvidia/llama-3.1-nemotron-ultra-253b-v1"
SUPER = "nvidia/llama-3.3-nemotron-super-49b-v1.5"
NANO = "nvidia/nemotron-3-nano-30b-a3b"
EMBED = "nvidia/llama-3.2-nv-embedqa-1b-v2"

# The chat calls that sent usage: (model, prompt, completion, cached, reasoning, streamed). The
# embeddings call (14 prompt tokens) has no price; the analyst's stream without include_usage
# sent no usage, so it is not here.
PRICED_CALLS = [
    (ULTRA, 52, 118, 0, 82, False),  # orchestrator plan
    (NANO, 114, 34, 0, 0, True),  # analyst tool-call turn
    (SUPER, 125, 124, 0, 92, False),  # researcher tool-call turn
    (NANO, 179, 49, 48, 0, True),  # analyst answer
    (SUPER, 203, 138, 48, 86, True),  # researcher answer
    (ULTRA, 219, 124, 16, 90, True),  # orchestrator synthesis
]
# The provider-null catalog entry that prices each model (chosen by hand; None: no price).
PRICE_PATTERNS: dict[str, str | None] = {
    ULTRA: "*llama-3?1-nemotron-ultra-253b-v1*",
    SUPER: "*llama-3?3-nemotron-super-49b-v1.5",
    NANO: "*nemotron-3-nano-30b-a3b*",
    EMBED: None,
}


class Library:
    """What one instrumentation records of a call's usage (corpus README, "Conventions observed")."""

    def __init__(self, *, cached: bool, reasoning_streamed: bool, reasoning: bool, embeddings: bool) -> None:
        self.cached = cached
        self.reasoning = reasoning
        self.reasoning_streamed = reasoning_streamed
        self.embeddings = embeddings

    def recorded(self, *, cached: int, reasoning: int, streamed: bool) -> tuple[int, int]:
        reasoning_seen = self.reasoning and (self.reasoning_streamed or not streamed)
        return (cached if self.cached else 0, reasoning if reasoning_seen else 0)


OTEL_V2 = Library(cached=False, reasoning=False, reasoning_streamed=False, embeddings=True)
# The 2.1b0 release records no embeddings span at all.
OTEL_V2_LEGACY = Library(cached=False, reasoning=False, reasoning_streamed=False, embeddings=False)
OPENINFERENCE = Library(cached=True, reasoning=True, reasoning_streamed=True, embeddings=True)
# Traceloop records reasoning tokens only on non-streamed calls.
TRACELOOP = Library(cached=True, reasoning=True, reasoning_streamed=False, embeddings=True)
LIBRARIES = {
    "otel-openai-v2-multiagent-content": OTEL_V2,
    "otel-openai-v2-multiagent-nocontent": OTEL_V2,
    "otel-openai-v2-legacy-multiagent-content": OTEL_V2_LEGACY,
    "openinference-openai-multiagent": OPENINFERENCE,
    "openinference-openai-multiagent-genai-semconv": OPENINFERENCE,
    "traceloop-openai-multiagent-content": TRACELOOP,
    "traceloop-openai-multiagent-nocontent": TRACELOOP,
}
# The same sums worked out on paper: ultra 271 in x 0.60 + 242 out x 1.80 = 598.2; super 328 x
# 0.10 + 262 x 0.40 = 137.6; nano 293 x 0.05 + 83 x 0.20 = 31.25, or 30.05 when its 48 cached
# tokens are recorded (cached at 0.025 instead of 0.05). Ultra and super have no separate cached
# or reasoning price, so those splits do not change their cost.
PAPER_COSTS = {
    OTEL_V2: Decimal("0.00076705"),
    OTEL_V2_LEGACY: Decimal("0.00076705"),
    OPENINFERENCE: Decimal("0.00076585"),
    TRACELOOP: Decimal("0.00076585"),
}


# --- Helpers ------------------------------------------------------------------------------------


def expected(stem: str) -> dict[str, Any]:
    return json.loads((CORPUS / f"{stem}.expected.json").read_text())


def expected_totals(stem: str) -> tuple[str, dict[str, Any]]:
    (trace_id, totals), *others = json.loads((CORPUS / "totals.json").read_text())[stem].items()
    assert not others, "every capture holds one trace"
    return trace_id, totals


def catalog_price(model: str) -> dict[str, Any] | None:
    pattern = PRICE_PATTERNS[model]
    prices = json.loads(PRICE_CATALOG.read_text())["prices"]
    if pattern is None:
        assert not any("embedqa" in p["model"] for p in prices), f"{model} was expected to have no price"
        return None
    entries = [p for p in prices if p["provider"] is None and p["model"] == pattern]
    assert len(entries) == 1, f"expected one provider-null catalog entry {pattern!r}, found {len(entries)}"
    return entries[0]


def call_cost(model: str, *, input_tokens: int, output_tokens: int, cached: int, reasoning: int) -> Decimal:
    price = catalog_price(model)
    assert price is not None
    per_input = Decimal(price["input"])
    per_cached = per_input if price["cached_input"] is None else Decimal(price["cached_input"])
    per_output = Decimal(price["output"])
    per_reasoning = per_output if price["reasoning"] is None else Decimal(price["reasoning"])
    total = (
        (input_tokens - cached) * per_input
        + cached * per_cached
        + (output_tokens - reasoning) * per_output
        + reasoning * per_reasoning
    )
    return total / PER_MILLION


def first(attributes: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in attributes:
            return attributes[key]
    return None


def span_kind(span: dict[str, Any]) -> str:
    attributes = span["classification_attributes"]
    for key, kinds in KIND_RULES:
        if key in attributes:
            return kinds[attributes[key]]  # a KeyError here: a value this test has not mapped yet
    raise AssertionError(f"no kind rule for span {span['name']!r}")


def span_model(span: dict[str, Any]) -> str:
    response = first(span["model_attributes"], RESPONSE_MODEL_KEYS) or ""
    request = first(span["model_attributes"], REQUEST_MODEL_KEYS) or ""
    if response and request == f"{request.split('/', 1)[0]}/{response}":
        return request  # the response model lost its "org/" (traceloop)
    return response or request


def own_agent_name(span: dict[str, Any]) -> str:
    name = span["name"].removeprefix("invoke_agent ").removesuffix(".agent")
    assert name in AGENTS, f"unexpected agent span {span['name']!r}"
    declared = span["classification_attributes"].get("gen_ai.agent.name")
    assert declared in (None, name)
    return name


def derived_spans(stem: str) -> dict[str, dict[str, Any]]:
    """The normalized columns each span of the capture should get, keyed by span id."""
    spans = {span["span_id"]: span for span in expected(stem)["spans"]}
    known = set(INPUT_KEYS + OUTPUT_KEYS + CACHED_KEYS + REASONING_KEYS + TOTAL_KEYS + NOT_USAGE_KEYS)
    known_models = set(RESPONSE_MODEL_KEYS + REQUEST_MODEL_KEYS)
    out: dict[str, dict[str, Any]] = {}
    for span_id, span in spans.items():
        tokens = span["token_attributes"]
        assert set(tokens) <= known, f"token attributes this test does not map: {set(tokens) - known}"
        assert set(span["model_attributes"]) <= known_models
        for keys in (INPUT_KEYS, OUTPUT_KEYS, CACHED_KEYS, REASONING_KEYS, TOTAL_KEYS):
            # Two conventions on one span (openinference with GenAI semconv) must agree, or
            # "count once" would be ambiguous.
            assert len({tokens[k] for k in keys if k in tokens}) <= 1
        input_tokens, output_tokens = first(tokens, INPUT_KEYS), first(tokens, OUTPUT_KEYS)
        has_usage = input_tokens is not None or output_tokens is not None
        total = first(tokens, TOTAL_KEYS)
        if total is None and has_usage:
            total = (input_tokens or 0) + (output_tokens or 0)
        provider = first(span["classification_attributes"], PROVIDER_KEYS) or ""
        out[span_id] = {
            "parent_span_id": span["parent_span_id"],
            "name": span["name"],
            "kind": span_kind(span),
            "model": span_model(span),
            "provider": provider.lower(),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": first(tokens, CACHED_KEYS),
            "reasoning_tokens": first(tokens, REASONING_KEYS),
            "total_tokens": total,
            "has_usage": has_usage,
        }
    above_usage: set[str] = set()
    for span in out.values():
        parent = span["parent_span_id"]
        while span["has_usage"] and parent:
            above_usage.add(parent)
            parent = out[parent]["parent_span_id"]
    for span_id, span in out.items():
        span["billed"] = span["has_usage"] and span_id not in above_usage
        if span["kind"] == "agent":
            span["agent_name"] = own_agent_name(spans[span_id])
            continue
        span["agent_name"] = ""
        parent = span["parent_span_id"]
        while parent:
            if out[parent]["kind"] == "agent":
                span["agent_name"] = own_agent_name(spans[parent])
                break
            parent = out[parent]["parent_span_id"]
    return out


def ingest_capture(project: Project, stem: str) -> int:
    """Accept and process the capture; returns the batch id."""
    body_file, encoding = next((body, enc) for s, body, enc in CORPUS_CAPTURES if s == stem)
    batch = ingest.batch_accept(
        project=project, body=corpus_bytes(body_file), content_type=otlp.PROTOBUF, content_encoding=encoding
    )
    assert batch is not None
    result = ingest.batch_process(batch_id=batch.pk)
    assert result is not None and result.rejected == 0
    return batch.pk


def trace_detail(client, secret: str, trace_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/traces/{trace_id}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200, response.content
    return response.json()


def walk(roots: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(parent span id, node) for every node of the API's nested tree."""
    seen: list[tuple[str, dict[str, Any]]] = []
    stack = [("", root) for root in roots]
    while stack:
        parent, node = stack.pop()
        seen.append((parent, node))
        stack.extend((node["span_id"], child) for child in node["children"])
    return seen


def delegation(agents: list[dict[str, Any]]) -> list[tuple[str, list]]:
    return sorted((agent["agent"], delegation(agent["sub_agents"])) for agent in agents)


def expected_cost(stem: str) -> Decimal:
    library = LIBRARIES[stem]
    total = Decimal(0)
    for model, prompt, completion, cached, reasoning, streamed in PRICED_CALLS:
        cached_seen, reasoning_seen = library.recorded(cached=cached, reasoning=reasoning, streamed=streamed)
        total += call_cost(
            model, input_tokens=prompt, output_tokens=completion, cached=cached_seen, reasoning=reasoning_seen
        )
    return total


# --- Tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_it_normalizes_every_span_as_its_instrumentation_recorded_it(stem, project_a):
    ingest_capture(project_a, stem)
    want = derived_spans(stem)
    fields = [
        "kind",
        "model",
        "provider",
        "agent_name",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "total_tokens",
        "billed",
    ]
    rows = {row["span_id"]: row for row in Span.objects.filter(project=project_a).values("span_id", "name", *fields)}
    assert set(rows) == set(want)
    for span_id, span in want.items():
        got = {f: rows[span_id][f] for f in fields}
        assert got == {f: span[f] for f in fields}, f"{stem}: span {span['name']!r} ({span_id})"


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_the_stream_without_include_usage_is_stored_without_usage_and_not_billed(stem, project_a):
    ingest_capture(project_a, stem)
    # The analyst's risk note: a nano chat span with no usage attribute at all.
    silent = [
        span
        for span in expected(stem)["spans"]
        if span_kind(span) == "llm" and not set(span["token_attributes"]) - set(NOT_USAGE_KEYS)
    ]
    assert len(silent) == 1 and span_model(silent[0]) == NANO
    row = Span.objects.get(project=project_a, span_id=silent[0]["span_id"])
    assert (row.input_tokens, row.output_tokens, row.cached_input_tokens, row.reasoning_tokens) == (None,) * 4
    assert row.total_tokens is None and row.cost is None and row.billed is False
    assert row.agent_name == "analyst"


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_it_rebuilds_the_call_tree_and_the_agent_delegation(stem, project_a, key_a, client):
    ingest_capture(project_a, stem)
    capture = expected(stem)
    (trace_info,) = capture["traces"]
    want = derived_spans(stem)
    edges = {(span["parent_span_id"], span_id) for span_id, span in want.items() if span["parent_span_id"]}
    assert len(edges) == trace_info["edge_count"] and trace_info["orphan_span_ids"] == []

    trace = Trace.objects.get(project=project_a, trace_id=trace_info["trace_id"])
    assert trace.root_span_name == trace_info["root_span_name"]
    assert [trace.root_span_id] == trace_info["root_span_ids"]
    assert trace.span_count == trace_info["span_count"] == capture["span_count"]

    detail = trace_detail(client, key_a[1], trace_info["trace_id"])
    nodes = walk(detail["tree"])
    assert sorted(node["span_id"] for _, node in nodes) == sorted(want), "every span exactly once"
    assert [node["span_id"] for node in detail["tree"]] == trace_info["root_span_ids"]
    assert {(parent, node["span_id"]) for parent, node in nodes if parent} == edges
    for parent, node in nodes:
        span = want[node["span_id"]]
        assert parent == span["parent_span_id"]
        assert (node["name"], node["kind"], node["agent"], node["billed"]) == (
            span["name"],
            span["kind"],
            span["agent_name"],
            span["billed"],
        )
        assert node["orphan"] is False and node["cycle"] is False
    assert all(span["orphan"] is False and span["cycle"] is False for span in detail["spans"])

    assert delegation(detail["agents"]) == [("orchestrator", [("analyst", []), ("researcher", [])])]
    (orchestrator,) = detail["agents"]
    if stem == "otel-openai-v2-legacy-multiagent-content":
        assert orchestrator["span_id"] == trace.root_span_id  # no workflow span above the agents
    else:
        assert want[orchestrator["span_id"]]["parent_span_id"] == trace.root_span_id


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_it_counts_each_model_call_once_in_the_trace_totals(stem, project_a, key_a, client):
    ingest_capture(project_a, stem)
    trace_id, totals = expected_totals(stem)
    billed = [span for span in derived_spans(stem).values() if span["billed"]]
    assert len(billed) == totals["llm_spans"]

    trace = Trace.objects.get(project=project_a, trace_id=trace_id)
    got = (trace.input_tokens, trace.output_tokens, trace.cached_input_tokens, trace.reasoning_tokens)
    assert got == (totals["input"], totals["output"], totals["cached"], totals["reasoning"])
    assert trace.total_tokens == sum(span["total_tokens"] for span in billed)
    assert Span.objects.filter(project=project_a, trace_id=trace_id, billed=True).count() == totals["llm_spans"]

    api = trace_detail(client, key_a[1], trace_id)["totals"]
    got = (api["input_tokens"], api["output_tokens"], api["cached_input_tokens"], api["reasoning_tokens"])
    assert got == (totals["input"], totals["output"], totals["cached"], totals["reasoning"])
    assert api["billed_count"] == totals["llm_spans"]
    assert api["total_tokens"] == trace.total_tokens


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_it_prices_the_trace_exactly_from_the_catalog(stem, project_a, key_a, client):
    ingest_capture(project_a, stem)
    trace_id, _ = expected_totals(stem)
    library = LIBRARIES[stem]
    cost = expected_cost(stem)
    assert cost == PAPER_COSTS[library]
    unpriced = 1 if library.embeddings else 0

    trace = Trace.objects.get(project=project_a, trace_id=trace_id)
    assert trace.cost == cost.quantize(TEN_PLACES)
    assert trace.cost.quantize(CENT) == cost.quantize(CENT)
    assert trace.unpriced_count == unpriced

    api = trace_detail(client, key_a[1], trace_id)
    assert Decimal(api["trace"]["cost"]) == cost and api["trace"]["unpriced_count"] == unpriced
    assert Decimal(api["totals"]["cost"]) == cost and api["totals"]["unpriced_count"] == unpriced

    # Span by span, each billed call at its own recorded usage; the embeddings call has no price.
    rows = {row.span_id: row for row in Span.objects.filter(project=project_a, trace_id=trace_id)}
    for span_id, span in derived_spans(stem).items():
        row = rows[span_id]
        if not span["has_usage"] or PRICE_PATTERNS[span["model"]] is None:
            assert row.cost is None, f"{span['name']} ({span_id}) should be unpriced"
            continue
        want = call_cost(
            span["model"],
            input_tokens=span["input_tokens"] or 0,
            output_tokens=span["output_tokens"] or 0,
            cached=span["cached_input_tokens"] or 0,
            reasoning=span["reasoning_tokens"] or 0,
        )
        assert row.cost == want.quantize(TEN_PLACES), f"{span['name']} ({span_id})"


@pytest.mark.parametrize("stem", CAPTURE_IDS)
def test_replaying_a_capture_changes_no_totals(stem, project_a, key_a, client):
    batch_id = ingest_capture(project_a, stem)
    trace_id, totals = expected_totals(stem)
    fields = [f for f in rollup.TRACE_ROLLUP_FIELDS if f != "updated_at"]
    before = Trace.objects.filter(project=project_a).values(*fields).get()
    api_before = trace_detail(client, key_a[1], trace_id)["totals"]

    result = ingest.batch_replay(batch_id=batch_id, inline=True)
    assert result is not None and result.spans == expected(stem)["span_count"]

    assert Trace.objects.filter(project=project_a).values(*fields).get() == before
    assert Span.objects.filter(project=project_a).count() == expected(stem)["span_count"]
    assert Span.objects.filter(project=project_a, billed=True).count() == totals["llm_spans"]
    trace = Trace.objects.get(project=project_a)
    assert (trace.input_tokens, trace.output_tokens) == (totals["input"], totals["output"])
    assert trace.cost == expected_cost(stem).quantize(TEN_PLACES)
    assert trace_detail(client, key_a[1], trace_id)["totals"] == api_before
