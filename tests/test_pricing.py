"""Span costs and trace totals: tracer/pricing.py through the real ingest path, and the
`reprice` and `syncprices` commands.

Spans are built as OTLP protobuf (tests/factories.py), accepted with ingest.batch_accept and processed with
ingest.batch_process. Prices are our own rows for a made-up model, so the numbers are round:
with token counts in the hundreds of thousands, a cost is a few dollars and exact in Decimal.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from tests.factories import MODEL, T0, TRACE, UNPRICED_MODEL, chat, ingest_spans, ns, otlp_span, price, sid, tid
from tracer.models import ModelPrice, Project, Span, Trace
from tracer.pricing import spans_reprice


def span_row(project: Project, span_id: str, trace: str = TRACE) -> Span:
    return Span.objects.get(project=project, trace_id=trace, span_id=span_id)


def trace_row(project: Project, trace: str = TRACE) -> Trace:
    return Trace.objects.get(project=project, trace_id=trace)


@pytest.fixture
def acme_price(db) -> ModelPrice:
    """$2 input, $0.50 cached input, $3 cache write, $10 output, $20 reasoning per 1M tokens."""
    return price(input="2", cached_input="0.5", cache_write="3", output="10", reasoning="20")


# --- The cost formula ----------------------------------------------------------------------


def test_it_prices_plain_input_and_output_per_million_tokens(project_a, acme_price) -> None:
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=100_000)))

    # 1M x $2 + 0.1M x $10
    assert span_row(project_a, sid(1)).cost == Decimal("3.0000000000")
    trace = trace_row(project_a)
    assert trace.cost == Decimal("3.0000000000")
    assert (trace.input_tokens, trace.output_tokens, trace.total_tokens) == (1_000_000, 100_000, 1_100_000)
    assert trace.unpriced_count == 0


def test_it_bills_reasoning_tokens_once_at_the_reasoning_price(project_a, acme_price) -> None:
    # Output includes reasoning: 300k output of which 100k reasoning.
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=300_000, reasoning=100_000)))

    # 1M x $2 + 200k x $10 + 100k x $20 (not 300k x $10 + 100k x $20 = $7)
    assert span_row(project_a, sid(1)).cost == Decimal("6.0000000000")
    trace = trace_row(project_a)
    assert trace.cost == Decimal("6.0000000000")
    assert (trace.output_tokens, trace.reasoning_tokens) == (300_000, 100_000)


def test_it_prices_reasoning_tokens_as_output_when_the_reasoning_price_is_null(project_a) -> None:
    price(input="2", output="10", reasoning=None)
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=300_000, reasoning=100_000)))

    # 1M x $2 + 300k x $10
    assert span_row(project_a, sid(1)).cost == Decimal("5.0000000000")


def test_it_bills_cached_input_at_the_cached_price_and_not_also_at_the_full_price(project_a, acme_price) -> None:
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=0, cached=400_000)))

    # 600k x $2 + 400k x $0.50 (double billing would be 1M x $2 + 400k x $0.50 = $2.20)
    assert span_row(project_a, sid(1)).cost == Decimal("1.4000000000")
    assert trace_row(project_a).cached_input_tokens == 400_000


def test_it_prices_cached_input_at_the_input_price_when_the_cached_price_is_null(project_a) -> None:
    price(input="2", output="10", cached_input=None)
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=0, cached=400_000)))

    assert span_row(project_a, sid(1)).cost == Decimal("2.0000000000")


def test_it_bills_cache_writes_at_the_write_price(project_a, acme_price) -> None:
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=0, cache_write=250_000)))

    # 750k x $2 + 250k x $3
    assert span_row(project_a, sid(1)).cost == Decimal("2.2500000000")
    assert trace_row(project_a).cache_write_tokens == 250_000


def test_it_prices_every_part_of_a_call_at_its_own_price(project_a, acme_price) -> None:
    attrs = chat(input=1_000_000, output=500_000, cached=200_000, cache_write=100_000, reasoning=50_000)
    ingest_spans(project_a, otlp_span(sid(1), attrs=attrs))

    # 700k x $2 + 200k x $0.5 + 100k x $3 + 450k x $10 + 50k x $20 = 1.4 + 0.1 + 0.3 + 4.5 + 1.0
    assert span_row(project_a, sid(1)).cost == Decimal("7.3000000000")


def test_it_keeps_fractions_of_a_cent_exactly(project_a, acme_price) -> None:
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=7, output=3)))

    # 7 x $2/1M + 3 x $10/1M
    assert span_row(project_a, sid(1)).cost == Decimal("0.0000440000")
    assert trace_row(project_a).cost == Decimal("0.0000440000")


def test_it_keeps_the_reported_cost_beside_its_own(project_a, acme_price) -> None:
    attrs = chat(input=1_000_000, output=100_000, **{"gen_ai.usage.cost": 0.0123})
    ingest_spans(project_a, otlp_span(sid(1), attrs=attrs))

    span = span_row(project_a, sid(1))
    assert span.reported_cost == Decimal("0.0123")
    assert span.cost == Decimal("3.0000000000")
    assert trace_row(project_a).cost == Decimal("3.0000000000")


# --- Billing each model call once -------------------------------------------------------------


def openinference_llm(*, input: int, output: int, model: str = MODEL) -> dict[str, Any]:
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": model,
        "llm.token_count.prompt": input,
        "llm.token_count.completion": output,
    }


def test_it_bills_a_call_instrumented_twice_once_on_the_leaf(project_a, acme_price) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), name="ChatCompletion", attrs=openinference_llm(input=1_000_000, output=100_000)),
        otlp_span(sid(2), sid(1), name="chat", start=T0 + 1000, attrs=chat(input=1_000_000, output=100_000)),
    )

    framework, client = span_row(project_a, sid(1)), span_row(project_a, sid(2))
    assert (framework.billed, client.billed) == (False, True)
    trace = trace_row(project_a)
    assert trace.cost == Decimal("3.0000000000")
    assert (trace.input_tokens, trace.output_tokens) == (1_000_000, 100_000)


def test_it_stops_billing_the_parent_when_its_child_arrives_in_a_later_batch(project_a, acme_price) -> None:
    ingest_spans(
        project_a, otlp_span(sid(1), name="ChatCompletion", attrs=openinference_llm(input=1_000_000, output=100_000))
    )
    assert span_row(project_a, sid(1)).billed is True
    assert trace_row(project_a).cost == Decimal("3.0000000000")

    ingest_spans(project_a, otlp_span(sid(2), sid(1), start=T0 + 1000, attrs=chat(input=1_000_000, output=100_000)))

    assert span_row(project_a, sid(1)).billed is False
    assert span_row(project_a, sid(2)).billed is True
    trace = trace_row(project_a)
    assert trace.cost == Decimal("3.0000000000")
    assert (trace.input_tokens, trace.output_tokens, trace.total_tokens) == (1_000_000, 100_000, 1_100_000)


def test_it_bills_the_leaf_when_the_child_arrives_before_its_parent(project_a, acme_price) -> None:
    ingest_spans(project_a, otlp_span(sid(2), sid(1), start=T0 + 1000, attrs=chat(input=1_000_000, output=100_000)))
    ingest_spans(
        project_a, otlp_span(sid(1), name="ChatCompletion", attrs=openinference_llm(input=1_000_000, output=100_000))
    )

    assert (span_row(project_a, sid(1)).billed, span_row(project_a, sid(2)).billed) == (False, True)
    assert trace_row(project_a).cost == Decimal("3.0000000000")


def test_it_does_not_bill_an_agent_span_that_carries_the_total_of_its_calls(project_a, acme_price) -> None:
    agent = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "planner",
        "gen_ai.request.model": MODEL,
        "gen_ai.usage.input_tokens": 1_500_000,
        "gen_ai.usage.output_tokens": 150_000,
    }
    ingest_spans(
        project_a,
        otlp_span(sid(1), name="invoke_agent planner", attrs=agent),
        otlp_span(sid(2), sid(1), start=T0 + 1000, attrs=chat(input=1_000_000, output=100_000)),
        otlp_span(sid(3), sid(1), start=T0 + 2000, attrs=chat(input=500_000, output=50_000)),
    )

    assert span_row(project_a, sid(1)).billed is False
    trace = trace_row(project_a)
    # $3 + $1.50, not $9
    assert trace.cost == Decimal("4.5000000000")
    assert (trace.input_tokens, trace.output_tokens) == (1_500_000, 150_000)


def test_it_does_not_bill_a_workflow_span_above_a_tool_above_a_call(project_a, acme_price) -> None:
    workflow = {"traceloop.span.kind": "workflow", "gen_ai.usage.input_tokens": 1_000_000}
    ingest_spans(
        project_a,
        otlp_span(sid(1), name="pipeline", attrs=workflow),
        otlp_span(sid(2), sid(1), name="tool", start=T0 + 1, attrs={"gen_ai.operation.name": "execute_tool"}),
        otlp_span(sid(3), sid(2), start=T0 + 2, attrs=chat(input=1_000_000, output=100_000)),
    )

    assert [span_row(project_a, sid(n)).billed for n in (1, 2, 3)] == [False, False, True]
    assert trace_row(project_a).cost == Decimal("3.0000000000")


# --- Unpriced models ---------------------------------------------------------------------


def test_an_unpriced_model_has_a_null_cost_and_is_counted(project_a, acme_price) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), name="agent", attrs={"gen_ai.operation.name": "invoke_agent"}),
        otlp_span(sid(2), sid(1), start=T0 + 1, attrs=chat(input=1_000_000, output=100_000)),
        otlp_span(sid(3), sid(1), start=T0 + 2, attrs=chat(model=UNPRICED_MODEL, input=1_000_000, output=100_000)),
    )

    assert span_row(project_a, sid(3)).cost is None
    assert span_row(project_a, sid(3)).billed is True
    trace = trace_row(project_a)
    assert trace.unpriced_count == 1
    # The priced span only; the unpriced one counts no $0.
    assert trace.cost == Decimal("3.0000000000")
    # Its tokens are still counted.
    assert trace.input_tokens == 2_000_000


def test_a_trace_with_only_unpriced_calls_has_a_null_cost_not_zero(project_a) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), attrs=chat(model=UNPRICED_MODEL, input=1000, output=10)),
        otlp_span(sid(2), start=T0 + 1, attrs=chat(model=UNPRICED_MODEL, input=1000, output=10)),
    )

    trace = trace_row(project_a)
    assert trace.cost is None
    assert trace.unpriced_count == 2


def test_a_trace_without_usage_has_a_null_cost_and_nothing_unpriced(project_a) -> None:
    ingest_spans(project_a, otlp_span(sid(1), name="startup", attrs={"component": "init"}))

    span, trace = span_row(project_a, sid(1)), trace_row(project_a)
    assert (span.cost, span.billed) == (None, False)
    assert (trace.cost, trace.unpriced_count) == (None, 0)


# --- Which price applies ---------------------------------------------------------------------


@pytest.fixture
def price_history(db) -> None:
    price(input="1", output="1", valid_from=date(2025, 1, 1))
    price(input="2", output="2", valid_from=date(2026, 1, 1))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2025-12-31T12:00:00", Decimal("1.0000000000")),
        ("2025-12-31T23:59:59.999999", Decimal("1.0000000000")),
        ("2026-01-01T00:00:00", Decimal("2.0000000000")),
        ("2026-06-01T00:00:00", Decimal("2.0000000000")),
    ],
)
def test_a_later_price_applies_from_its_valid_from_day_on(project_a, price_history, moment, expected) -> None:
    ingest_spans(project_a, otlp_span(sid(1), start=ns(moment), attrs=chat(input=1_000_000, output=0)))

    assert span_row(project_a, sid(1)).cost == expected


def test_a_call_in_the_last_nanosecond_before_a_new_price_gets_the_old_price(project_a, price_history) -> None:
    last_nanosecond = ns("2026-01-01T00:00:00") - 1
    ingest_spans(project_a, otlp_span(sid(1), start=last_nanosecond, attrs=chat(input=1_000_000, output=0)))

    assert span_row(project_a, sid(1)).cost == Decimal("1.0000000000")


def test_a_price_valid_only_after_the_call_does_not_apply(project_a) -> None:
    price(input="2", output="2", valid_from=date(2027, 1, 1))
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=0)))

    assert span_row(project_a, sid(1)).cost is None
    assert trace_row(project_a).unpriced_count == 1


def test_a_project_override_wins_for_that_project_only(project_a, project_b) -> None:
    price(input="2", output="10")
    price(input="5", output="10", project=project_a)
    body = otlp_span(sid(1), attrs=chat(input=1_000_000, output=0))

    ingest_spans(project_a, body)
    ingest_spans(project_b, body)

    assert span_row(project_a, sid(1)).cost == Decimal("5.0000000000")
    assert span_row(project_b, sid(1)).cost == Decimal("2.0000000000")


def test_another_projects_override_is_ignored(project_a, project_b) -> None:
    price(input="5", output="10", project=project_b)
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=0)))

    assert span_row(project_a, sid(1)).cost is None


def test_a_provider_specific_price_beats_one_for_any_provider(project_a) -> None:
    price(input="2", output="10")
    price(input="7", output="10", provider="acme")

    ingest_spans(
        project_a,
        otlp_span(sid(1), attrs=chat(input=1_000_000, output=0, **{"gen_ai.provider.name": "acme"})),
        otlp_span(sid(2), start=T0 + 1, attrs=chat(input=1_000_000, output=0, **{"gen_ai.provider.name": "other"})),
        otlp_span(sid(3), start=T0 + 2, attrs=chat(input=1_000_000, output=0)),
    )

    assert span_row(project_a, sid(1)).cost == Decimal("7.0000000000")
    assert span_row(project_a, sid(2)).cost == Decimal("2.0000000000")
    assert span_row(project_a, sid(3)).cost == Decimal("2.0000000000")


def test_a_more_specific_pattern_beats_a_wildcard(project_a) -> None:
    price(pattern="acme-*", input="9", output="10")
    price(pattern=MODEL, input="2", output="10")

    ingest_spans(
        project_a,
        otlp_span(sid(1), attrs=chat(input=1_000_000, output=0)),
        otlp_span(sid(2), start=T0 + 1, attrs=chat(model="acme-other-model", input=1_000_000, output=0)),
        otlp_span(sid(3), start=T0 + 2, attrs=chat(model="ACME-Test-Model", input=1_000_000, output=0)),
    )

    assert span_row(project_a, sid(1)).cost == Decimal("2.0000000000")
    assert span_row(project_a, sid(2)).cost == Decimal("9.0000000000")
    # Patterns are lower case and the model name is matched case-insensitively.
    assert span_row(project_a, sid(3)).cost == Decimal("2.0000000000")


def test_a_pattern_matches_the_model_name_without_its_org(project_a) -> None:
    price(pattern=MODEL, input="2", output="10")
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(model=f"acme/{MODEL}", input=1_000_000, output=0)))

    assert span_row(project_a, sid(1)).cost == Decimal("2.0000000000")


# --- manage.py reprice --------------------------------------------------------------------


def reprice(*args: str) -> str:
    out = StringIO()
    call_command("reprice", *args, stdout=out)
    return out.getvalue()


def test_reprice_recomputes_span_costs_and_trace_totals_after_a_price_change(project_a, acme_price) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), attrs=chat(input=1_000_000, output=100_000)),
        otlp_span(sid(2), start=T0 + 1, attrs=chat(input=500_000, output=0)),
    )
    assert trace_row(project_a).cost == Decimal("4.0000000000")
    ModelPrice.objects.filter(pk=acme_price.pk).update(input=Decimal("4"))

    output = reprice()

    assert span_row(project_a, sid(1)).cost == Decimal("5.0000000000")
    assert span_row(project_a, sid(2)).cost == Decimal("2.0000000000")
    assert trace_row(project_a).cost == Decimal("7.0000000000")
    assert "Repriced 2 span(s)" in output


def test_reprice_commits_chunk_by_chunk_and_a_rerun_finds_nothing_left(project_a, acme_price) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), attrs=chat(input=1_000_000, output=100_000)),
        otlp_span(sid(2), start=T0 + 1, attrs=chat(input=500_000, output=0)),
        otlp_span(sid(3), start=T0 + 2, attrs=chat(input=0, output=100_000)),
    )
    ModelPrice.objects.filter(pk=acme_price.pk).update(input=Decimal("4"))
    chunks: list[int] = []

    changed, rollups = spans_reprice(project_id=project_a.pk, chunk=2, on_chunk=chunks.append)

    assert chunks == [2, 1]
    # Spans 1 and 2 have input tokens, so their cost changed; span 3 (output only) kept its cost.
    assert (changed, rollups) == (2, 1)
    assert trace_row(project_a).cost == span_row(project_a, sid(1)).cost + span_row(project_a, sid(2)).cost + (
        span_row(project_a, sid(3)).cost
    )
    assert spans_reprice(project_id=project_a.pk, chunk=2) == (0, 0)


def test_reprice_prices_spans_that_were_unpriced(project_a) -> None:
    ingest_spans(project_a, otlp_span(sid(1), attrs=chat(input=1_000_000, output=100_000)))
    assert trace_row(project_a).unpriced_count == 1

    price(input="2", output="10")
    reprice()

    assert span_row(project_a, sid(1)).cost == Decimal("3.0000000000")
    trace = trace_row(project_a)
    assert (trace.cost, trace.unpriced_count) == (Decimal("3.0000000000"), 0)


def test_reprice_keeps_a_twice_instrumented_call_billed_once(project_a, acme_price) -> None:
    ingest_spans(
        project_a,
        otlp_span(sid(1), name="ChatCompletion", attrs=openinference_llm(input=1_000_000, output=100_000)),
        otlp_span(sid(2), sid(1), start=T0 + 1, attrs=chat(input=1_000_000, output=100_000)),
    )
    ModelPrice.objects.filter(pk=acme_price.pk).update(input=Decimal("4"))

    reprice()

    assert trace_row(project_a).cost == Decimal("5.0000000000")


def test_reprice_with_a_project_touches_only_that_project(project_a, project_b, acme_price) -> None:
    body = otlp_span(sid(1), attrs=chat(input=1_000_000, output=0))
    ingest_spans(project_a, body)
    ingest_spans(project_b, body)
    ModelPrice.objects.filter(pk=acme_price.pk).update(input=Decimal("4"))

    reprice("--project", project_a.slug)

    assert span_row(project_a, sid(1)).cost == Decimal("4.0000000000")
    assert trace_row(project_a).cost == Decimal("4.0000000000")
    assert span_row(project_b, sid(1)).cost == Decimal("2.0000000000")
    assert trace_row(project_b).cost == Decimal("2.0000000000")


def test_reprice_with_since_touches_only_spans_that_started_since(project_a, acme_price) -> None:
    old, new = tid(1), tid(2)
    ingest_spans(
        project_a,
        otlp_span(sid(1), trace=old, start=ns("2026-02-01T10:00:00"), attrs=chat(input=1_000_000, output=0)),
        otlp_span(sid(2), trace=new, start=ns("2026-02-03T10:00:00"), attrs=chat(input=1_000_000, output=0)),
    )
    ModelPrice.objects.filter(pk=acme_price.pk).update(input=Decimal("4"))

    reprice("--since", "2026-02-02")

    assert span_row(project_a, sid(1), old).cost == Decimal("2.0000000000")
    assert trace_row(project_a, old).cost == Decimal("2.0000000000")
    assert span_row(project_a, sid(2), new).cost == Decimal("4.0000000000")
    assert trace_row(project_a, new).cost == Decimal("4.0000000000")


def test_reprice_refuses_an_unknown_project(db) -> None:
    with pytest.raises(CommandError, match="no-such-project"):
        reprice("--project", "no-such-project")


def test_reprice_refuses_a_bad_since(db) -> None:
    with pytest.raises(CommandError):
        reprice("--since", "last tuesday")


# --- manage.py syncprices -------------------------------------------------------------------


def catalog_entry(**fields: Any) -> dict[str, Any]:
    entry = {
        "provider": "acme",
        "model": "acme-sync-model",
        "input": "1.25",
        "cached_input": "0.125",
        "cache_write": None,
        "output": "10",
        "reasoning": None,
        "valid_from": "2026-01-01",
        "source": "tests",
    }
    entry.update(fields)
    return entry


def write_catalog(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"version": 1, "prices": entries}))
    return path


def syncprices(path: Path) -> str:
    out = StringIO()
    call_command("syncprices", "--file", str(path), stdout=out)
    return out.getvalue()


def test_syncprices_loads_the_entries_of_a_file(db, tmp_path) -> None:
    path = write_catalog(tmp_path / "prices.json", [catalog_entry(), catalog_entry(model="ACME-Other", input="3")])

    output = syncprices(path)

    loaded = ModelPrice.objects.get(provider="acme", model_pattern="acme-sync-model")
    assert loaded.project is None
    assert (loaded.input, loaded.cached_input, loaded.cache_write, loaded.output, loaded.reasoning) == (
        Decimal("1.25"),
        Decimal("0.125"),
        None,
        Decimal("10"),
        None,
    )
    assert loaded.valid_from == date(2026, 1, 1)
    # Patterns are stored lower case.
    assert ModelPrice.objects.get(provider="acme", model_pattern="acme-other").input == Decimal("3")
    assert "2 added" in output


def test_syncprices_updates_an_entry_instead_of_duplicating_it(db, tmp_path) -> None:
    syncprices(write_catalog(tmp_path / "v1.json", [catalog_entry()]))

    output = syncprices(write_catalog(tmp_path / "v2.json", [catalog_entry(input="1.5")]))

    (loaded,) = ModelPrice.objects.filter(model_pattern="acme-sync-model")
    assert loaded.input == Decimal("1.5")
    assert "0 added, 1 updated" in output


def test_syncprices_adds_history_for_a_later_valid_from(db, tmp_path) -> None:
    syncprices(write_catalog(tmp_path / "v1.json", [catalog_entry()]))
    syncprices(write_catalog(tmp_path / "v2.json", [catalog_entry(input="1.5", valid_from="2026-06-01")]))

    history = ModelPrice.objects.filter(model_pattern="acme-sync-model").order_by("valid_from")
    assert [(p.valid_from, p.input) for p in history] == [
        (date(2026, 1, 1), Decimal("1.25")),
        (date(2026, 6, 1), Decimal("1.5")),
    ]


def test_syncprices_leaves_project_overrides_alone(project_a, tmp_path) -> None:
    override = price(
        pattern="acme-sync-model", provider="acme", input="9", project=project_a, valid_from=date(2026, 1, 1)
    )

    syncprices(write_catalog(tmp_path / "prices.json", [catalog_entry()]))

    override.refresh_from_db()
    assert override.input == Decimal("9")
    assert ModelPrice.objects.filter(model_pattern="acme-sync-model").count() == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"input": None},
        {"output": "ten dollars"},
        {"valid_from": "someday"},
        {"cached_input": "0.1.2"},
        {"input": "NaN"},
        {"output": "-1"},
        {"output": "1000000"},
        {"reasoning": "0.0000001"},
        {"model": "m" * 201},
        {"source_date": "someday"},
    ],
    ids=[
        "null-input",
        "bad-output",
        "bad-date",
        "bad-cached",
        "nan-input",
        "negative-output",
        "too-many-digits",
        "too-many-places",
        "long-pattern",
        "bad-source-date",
    ],
)
def test_syncprices_refuses_a_bad_entry_and_writes_nothing(db, tmp_path, bad: dict[str, Any]) -> None:
    before = ModelPrice.objects.count()
    path = write_catalog(tmp_path / "prices.json", [catalog_entry(model="acme-good"), catalog_entry(**bad)])

    with pytest.raises(CommandError, match="entry 1"):
        syncprices(path)

    assert ModelPrice.objects.count() == before
    assert not ModelPrice.objects.filter(model_pattern="acme-good").exists()


@pytest.mark.parametrize("missing", ["model", "input", "output", "valid_from"])
def test_syncprices_refuses_an_entry_missing_a_field_and_writes_nothing(db, tmp_path, missing: str) -> None:
    before = ModelPrice.objects.count()
    entry = catalog_entry()
    del entry[missing]
    path = write_catalog(tmp_path / "prices.json", [catalog_entry(model="acme-good"), entry])

    with pytest.raises(CommandError, match=missing):
        syncprices(path)

    assert ModelPrice.objects.count() == before


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps({"version": 1}), json.dumps([1, 2])], ids=["bad-json", "no-prices", "a-list"]
)
def test_syncprices_refuses_a_file_that_is_not_a_catalog(db, tmp_path, content: str) -> None:
    before = ModelPrice.objects.count()
    path = tmp_path / "prices.json"
    path.write_text(content)

    with pytest.raises(CommandError):
        syncprices(path)

    assert ModelPrice.objects.count() == before


def test_syncprices_refuses_a_missing_file(db, tmp_path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        syncprices(tmp_path / "nowhere.json")
