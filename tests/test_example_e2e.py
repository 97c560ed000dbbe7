"""The SDK's example crew, run against the mock NIM, traced through a live server and a real
worker: the stored tree, tokens and costs are what the example did and what the catalog says."""

from __future__ import annotations

from decimal import Decimal

import pytest

import octotrace
from examples.research_crew import crew
from tests.factories import wait_until_processed
from tracer.models import Span, Trace
from tracer.pricing import prices_sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Catalog prices (tracer/data/prices.json, provider-any entries), USD per 1M: input, cached, output.
PRICES = {
    crew.ORCHESTRATOR_MODEL: (Decimal("0.60"), Decimal("0.60"), Decimal("1.80")),  # *llama-3?1-nemotron-ultra-253b-v1*
    crew.RESEARCHER_MODEL: (Decimal("0.10"), Decimal("0.10"), Decimal("0.40")),  # *llama-3?3-nemotron-super-49b-v1.5
    crew.ANALYST_MODEL: (Decimal("0.05"), Decimal("0.025"), Decimal("0.20")),  # *nemotron-3-nano-30b-a3b*
    crew.WRITER_MODEL: (Decimal("0.04"), Decimal("0.04"), Decimal("0.16")),  # *nemotron-nano-9b-v2
}
AGENT_OF_MODEL = {
    crew.ORCHESTRATOR_MODEL: "orchestrator",
    crew.RESEARCHER_MODEL: "researcher",
    crew.ANALYST_MODEL: "analyst",
    crew.WRITER_MODEL: "writer",
    crew.EMBEDDING_MODEL: "researcher",
}


@pytest.fixture
def traced_run(live_server, worker, project_a, key_a):
    _, secret = key_a
    # A transactional test before this one flushed the catalog the migration loaded.
    prices_sync()
    octotrace.init(endpoint=live_server.url, api_key=secret, service_name="research-crew")
    try:
        crew.run(runs=1)
    finally:
        octotrace.shutdown()
    wait_until_processed(project_a)
    return project_a


def test_the_crew_is_stored_as_one_tree_of_agents(traced_run, client, key_a):
    trace = Trace.objects.get(project=traced_run)
    assert trace.root_span_name == "invoke_workflow research_report"
    detail = client.get(f"/api/v1/traces/{trace.trace_id}", HTTP_AUTHORIZATION=f"Bearer {key_a[1]}").json()
    [orchestrator] = detail["agents"]
    assert orchestrator["agent"] == "orchestrator"
    # The researcher and the analyst ran concurrently in a thread pool, and still nest under it.
    assert sorted(a["agent"] for a in orchestrator["sub_agents"]) == ["analyst", "researcher", "writer"]
    spans = {s["span_id"]: s for s in detail["spans"]}
    by_name = {s["name"]: s for s in detail["spans"]}
    orchestrator_span = by_name["invoke_agent orchestrator"]
    assert orchestrator_span["parent_span_id"] == by_name["invoke_workflow research_report"]["span_id"]
    for name in ("invoke_agent researcher", "invoke_agent analyst", "invoke_agent writer"):
        assert by_name[name]["parent_span_id"] == orchestrator_span["span_id"]
    for span in detail["spans"]:
        if span["kind"] in ("llm", "embedding"):
            assert span["agent_name"] == AGENT_OF_MODEL[span["model"]], span["name"]
            assert spans[span["parent_span_id"]]["kind"] == "agent"
    assert by_name["execute_tool search_docs"]["agent_name"] == "researcher"
    assert by_name["execute_tool calculator"]["agent_name"] == "analyst"


def test_reasoning_and_cached_tokens_are_stored(traced_run):
    chats = list(Span.objects.filter(project=traced_run, kind="llm").order_by("start_time_unix_nano"))
    assert len(chats) == 7
    for span in chats:
        thinking = span.model in (crew.ORCHESTRATOR_MODEL, crew.RESEARCHER_MODEL)
        assert (span.reasoning_tokens or 0) > 0 if thinking else not span.reasoning_tokens, span.name
        # Every call has usage, the writer's stream too: the SDK asked for it.
        assert span.input_tokens and span.output_tokens and span.billed
    final_orchestrator_call = [s for s in chats if s.model == crew.ORCHESTRATOR_MODEL][-1]
    # It re-sends the system prompt and the plan request: the mock caches that prefix.
    assert final_orchestrator_call.cached_input_tokens and final_orchestrator_call.cached_input_tokens % 16 == 0


def test_costs_are_the_catalog_prices(traced_run):
    expected_total = Decimal(0)
    for span in Span.objects.filter(project=traced_run, billed=True):
        if span.model == crew.EMBEDDING_MODEL:
            assert span.cost is None  # no host lists a price for it: unpriced, not $0
            continue
        price_in, price_cached, price_out = PRICES[span.model]
        cached = span.cached_input_tokens or 0
        expected = (
            (span.input_tokens - cached) * price_in + cached * price_cached + span.output_tokens * price_out
        ) / (Decimal(1_000_000))
        assert span.cost == expected.quantize(Decimal("0.0000000001")), span.name
        expected_total += span.cost
    trace = Trace.objects.get(project=traced_run)
    assert trace.cost == expected_total
    assert trace.unpriced_count == 1
